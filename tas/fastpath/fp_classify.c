/*
 * Validate a received frame before anything trusts its headers.  Malformed
 * frames are dropped and counted here and never reach the rest of the
 * fast path or the slow path.
 */
#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include "fp_cksum.h"
#include "fp_internal.h"

static bool mac_is_ours(const struct tas_fp *fp, const struct rte_ether_addr *a)
{
    return rte_is_broadcast_ether_addr(a) ||
           memcmp(a->addr_bytes, fp->conf.mac, RTE_ETHER_ADDR_LEN) == 0;
}

static enum fp_verdict drop(uint64_t *ctr)
{
    kb_stats_add(ctr, 1);
    return FP_DROP;
}

/* A correct segment (checksum field included) plus pseudo header sums to
 * 0xffff in ones' complement. */
static bool tcp_cksum_ok(const struct rte_ipv4_hdr *ip, const struct rte_tcp_hdr *tcp,
                         uint32_t l4len)
{
    return fp_tcp_sum(ip, tcp, l4len) == 0xffff;
}

static struct tas_flow *find_flow(struct tas_fp *fp, struct fp_flow_hint *h, uint32_t peer_ip,
                                  uint16_t local_port, uint16_t peer_port)
{
    if (h->flow != NULL && h->peer_ip == peer_ip && h->local_port == local_port &&
        h->peer_port == peer_port)
        return h->flow;
    struct tas_flow *f = fp_flow_find(fp, peer_ip, local_port, peer_port);
    if (f != NULL)
        *h = (struct fp_flow_hint){f, peer_ip, local_port, peer_port};
    return f;
}

static enum fp_verdict classify_ipv4(struct tas_fp *fp, struct rte_mbuf *m, uint32_t *reason,
                                     struct tas_flow **flow, struct fp_flow_hint *hint)
{
    uint32_t len = rte_pktmbuf_data_len(m) - sizeof(struct rte_ether_hdr);
    if (len < sizeof(struct rte_ipv4_hdr))
        return drop(fp->ctr.drop_malformed);
    const struct rte_ipv4_hdr *ip =
        rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
    uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    uint32_t total = rte_be_to_cpu_16(ip->total_length);
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(*ip) || total < ihl || total > len)
        return drop(fp->ctr.drop_malformed);
    /* A correct header (checksum field included) sums to 0xffff. */
    if (fp_raw_cksum(ip, ihl) != 0xffff)
        return drop(fp->ctr.drop_malformed);
    if (rte_be_to_cpu_32(ip->dst_addr) != fp->conf.ip)
        return drop(fp->ctr.drop_not_ours);
    /* Fragments are not part of the common case; the slow path drops them. */
    switch (ip->next_proto_id) {
    case IPPROTO_ICMP:
        *reason = TAS_EXC_ICMP;
        return FP_EXCEPTION;
    case IPPROTO_TCP: {
        if (total - ihl < sizeof(struct rte_tcp_hdr))
            return drop(fp->ctr.drop_malformed);
        const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
        uint32_t thl = (tcp->data_off >> 4) * 4u;
        /* IP options on TCP are unusual: the slow path may look, not us. */
        if (thl < sizeof(*tcp) || ihl + thl > total)
            return drop(fp->ctr.drop_malformed);
        if (!tcp_cksum_ok(ip, tcp, total - ihl))
            return drop(fp->ctr.drop_bad_csum);
        *reason = TAS_EXC_TCP_CTRL;
        *flow = find_flow(fp, hint, rte_be_to_cpu_32(ip->src_addr),
                          rte_be_to_cpu_16(tcp->dst_port), rte_be_to_cpu_16(tcp->src_port));
        return *flow != NULL && ihl == sizeof(*ip) ? FP_FLOW : FP_EXCEPTION;
    }
    default:
        *reason = TAS_EXC_OTHER;
        return FP_EXCEPTION;
    }
}

enum fp_verdict fp_classify(struct tas_fp *fp, struct rte_mbuf *m, uint32_t *reason,
                            struct tas_flow **flow, struct fp_flow_hint *hint)
{
    if (rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) || m->nb_segs != 1)
        return drop(fp->ctr.drop_malformed);
    const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
    if (!mac_is_ours(fp, &eth->dst_addr))
        return drop(fp->ctr.drop_not_ours);
    switch (rte_be_to_cpu_16(eth->ether_type)) {
    case RTE_ETHER_TYPE_ARP:
        if (rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(struct rte_arp_hdr))
            return drop(fp->ctr.drop_malformed);
        *reason = TAS_EXC_ARP;
        return FP_EXCEPTION;
    case RTE_ETHER_TYPE_IPV4:
        return classify_ipv4(fp, m, reason, flow, hint);
    default:
        return drop(fp->ctr.drop_not_ours);
    }
}
