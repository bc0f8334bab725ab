/*
 * The port's transmit side, below the TCP layer: packets are batched per
 * core and sent with one rte_eth_tx_burst (fault injection, retries for a
 * momentarily full ring, drop counting).  fp_tcp_tx.c and the loop call
 * down into it; it calls nothing above it.
 *
 * A ring that stays full (the peer of a net_memif link not polling, a NIC
 * slower than the fast path) does not drop what we built: up to
 * FP_TX_HELD packets wait, in order, and go before anything newer; while
 * half of that waits the core builds no new data segments
 * (fp_tx_backlogged).  Dropping them made a loss of every burst that found
 * the ring full, and congestion control halved the rate for it: 64 KiB
 * echoes on 64 connections over memif went at a tenth of Linux's rate.
 */
#include <rte_ip.h>

#include "fp_cksum.h"
#include "fp_internal.h"

/* Hand pkts[0..n) to the port, a few tries; returns how many it took. */
static unsigned burst(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    unsigned sent = 0;
    enum fp_stage prev = fp_stage_enter(c, FP_ST_TX_DRV);
    /* A few retries absorb a momentarily full TX ring. */
    for (int tries = 0; sent < n && tries < 8; tries++)
        sent += rte_eth_tx_burst(c->fp->port, c->idx, pkts + sent, (uint16_t)(n - sent));
    fp_stage_leave(c, prev);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < sent; i++)
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    c->hot.tx_pkts += sent;
    c->hot.tx_bytes += bytes;
    return sent;
}

/* Send what waits; true if all of it went. */
static bool send_held(struct fp_core *c)
{
    if (c->nheld == 0)
        return true;
    unsigned sent = burst(c, c->held, c->nheld);
    c->nheld -= sent;
    c->held_sent += sent;
    memmove(c->held, c->held + sent, c->nheld * sizeof(c->held[0]));
    return c->nheld == 0;
}

/* Keep pkts[0..n) to send after what waits; what does not fit is dropped. */
static void hold(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    unsigned room = FP_TX_HELD - c->nheld, k = RTE_MIN(n, room);
    memcpy(c->held + c->nheld, pkts, k * sizeof(pkts[0]));
    c->nheld += k;
    kb_stats_add(c->fp->ctr.tx_held, k);
    if (k < n) {
        kb_stats_add(c->fp->ctr.tx_drops, n - k);
        rte_pktmbuf_free_bulk(pkts + k, n - k);
    }
}

void fp_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    n = fp_fault_tx(c, pkts, n);
    unsigned sent = send_held(c) ? burst(c, pkts, n) : 0;
    if (sent < n)
        hold(c, pkts + sent, n - sent);
}

bool fp_tx_backlogged(const struct fp_core *c)
{
    return c->nheld >= FP_TX_HELD / 2;
}

void fp_tx_drop_held(struct fp_core *c)
{
    rte_pktmbuf_free_bulk(c->held, c->nheld);
    c->nheld = 0;
}

struct rte_ipv4_hdr *fp_tx_ipv4(struct tas_fp *fp, struct rte_mbuf *m, const struct tas_flow *f,
                                uint32_t l4len, uint8_t tos)
{
    uint32_t len = sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + l4len;
    uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)len);
    if (p == NULL) {
        rte_pktmbuf_free(m);
        return NULL;
    }
    struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
    memcpy(eth->dst_addr.addr_bytes, f->peer_mac, RTE_ETHER_ADDR_LEN);
    memcpy(eth->src_addr.addr_bytes, fp->conf.mac, RTE_ETHER_ADDR_LEN);
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
    /* the checksum is summed from the values written, not read back from
     * the header just stored (those loads stall behind the stores) */
    uint16_t ip_len = (uint16_t)(sizeof(*ip) + l4len);
    uint32_t sum = ((uint32_t)RTE_IPV4_VHL_DEF << 8 | tos) + ip_len + RTE_IPV4_HDR_DF_FLAG +
                   (64u << 8 | IPPROTO_TCP) + fp_halves(f->local_ip) + fp_halves(f->peer_ip);
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->type_of_service = tos;
    ip->total_length = rte_cpu_to_be_16(ip_len);
    ip->packet_id = 0;
    ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_TCP;
    ip->hdr_checksum = rte_cpu_to_be_16((uint16_t)~fp_fold(sum));
    ip->src_addr = rte_cpu_to_be_32(f->local_ip);
    ip->dst_addr = rte_cpu_to_be_32(f->peer_ip);
    return ip;
}

void fp_tx_one(struct fp_core *c, struct rte_mbuf *m)
{
    c->txbuf[c->ntx++] = m;
    if (c->ntx == FP_BURST)
        fp_tx_flush(c);
}

void fp_tx_flush(struct fp_core *c)
{
    if (c->ntx > 0) {
        fp_tx(c, c->txbuf, c->ntx);
        c->ntx = 0;
    } else {
        send_held(c);
    }
}
