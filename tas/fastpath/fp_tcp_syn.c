/*
 * SYNs for hand-over listeners answered here (include/tas/synfast.h): no
 * slow path between a client's SYN and its SYN-ACK, nor between the SYN and
 * the app hearing of the connection.  The flow gets a pool entry the slow
 * path provisioned ahead, is installed as the slow path would (SYN_RCVD,
 * quiet), and the slow path collects a record of it afterwards.  The
 * SYN-ACK carries what the slow path's carries (tcp.py _syn_options): MSS,
 * then SACK-permitted folded into the timestamp option (or alone), then
 * the window scale, each offered only if the peer offered it.
 */
#include <rte_ip.h>
#include <rte_random.h>
#include <rte_tcp.h>

#include "fp_internal.h"

#define TCP_OPT_MSS 2
#define TCP_OPT_WSCALE 3
#define TCP_OPT_SACK_OK 4
#define TCP_OPT_TS 8

/* As tas/slowpath/tcp_packets.py TcpOptions.parse: false if malformed. */
bool fp_syn_parse_options(const uint8_t *start, const uint8_t *end, struct fp_syn_opts *so)
{
    so->mss = 0;
    so->wscale = -1;
    so->sack = so->ts = false;
    so->tsval = 0;
    bool bad = false;
    for (const uint8_t *o = fp_tcp_opt(start, end, &bad); o != NULL;
         o = fp_tcp_opt(o + o[1], end, &bad)) {
        if (o[0] == TCP_OPT_MSS && o[1] == 4)
            so->mss = (uint16_t)(o[2] << 8 | o[3]);
        else if (o[0] == TCP_OPT_WSCALE && o[1] == 3)
            so->wscale = RTE_MIN(o[2], 14);
        else if (o[0] == TCP_OPT_SACK_OK && o[1] == 2)
            so->sack = true;
        else if (o[0] == TCP_OPT_TS && o[1] == 10) {
            so->ts = true;
            so->tsval = rte_be_to_cpu_32(*(const unaligned_uint32_t *)(o + 2));
        }
    }
    return !bad;
}

static bool fallback(struct tas_fp *fp, int why)
{
    kb_stats_add(fp->ctr.syn_fallback[why], 1);
    return false;
}

/* Connections waiting to be accepted, as the slow path's backlog counts. */
static uint64_t waiting(const struct fp_listener *l)
{
    uint64_t acc = l->accept_ctr != NULL ? __atomic_load_n(l->accept_ctr, __ATOMIC_ACQUIRE) : 0;
    uint64_t live = l->opened - l->gone;
    return live > acc ? live - acc : 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    v = rte_cpu_to_be_32(v);
    memcpy(p, &v, 4);
}

/* The smallest MSS a peer gets, as Linux's tcp_min_snd_mss: a SYN that
 * says 1 made every segment a byte (40 bytes of headers each), and one at
 * most 12 with timestamps made the MSS 0 or wrap (mss - 12): the fast path
 * then sent empty segments without end, half a million a second, or
 * nothing. */
#define FP_MIN_SND_MSS 48u

uint16_t fp_syn_mss(const struct tas_fp *fp, const struct fp_syn_opts *so)
{
    uint32_t peer_mss = RTE_MAX(so->mss ? (uint32_t)so->mss : 536u, FP_MIN_SND_MSS);
    uint32_t mss = RTE_MIN(RTE_MIN(peer_mss, (uint32_t)fp->syn.mss), (uint32_t)fp->tx_mtu - 40u);
    return (uint16_t)(mss - (so->ts ? 12u : 0u));
}

/* The options go in the order the slow path's do (tcp.py _syn_options). */
struct rte_mbuf *fp_syn_frame(struct tas_fp *fp, const struct tas_flow *f, uint32_t seq,
                              uint8_t tcp_flags, const struct fp_syn_opts *so)
{
    struct rte_mbuf *m = rte_pktmbuf_alloc(fp->pool);
    if (m == NULL)
        return NULL;
    uint8_t opts[40];
    unsigned n = 0;
    opts[n++] = TCP_OPT_MSS;
    opts[n++] = 4;
    opts[n++] = (uint8_t)(fp->syn.mss >> 8);
    opts[n++] = (uint8_t)fp->syn.mss;
    if (so->ts) {
        opts[n++] = so->sack ? TCP_OPT_SACK_OK : 1;
        opts[n++] = so->sack ? 2 : 1;
        opts[n++] = TCP_OPT_TS;
        opts[n++] = 10;
        put_u32(opts + n, fp_now_us(fp));
        put_u32(opts + n + 4, so->tsval);
        n += 8;
    } else if (so->sack) {
        opts[n++] = 1;
        opts[n++] = 1;
        opts[n++] = TCP_OPT_SACK_OK;
        opts[n++] = 2;
    }
    if (so->wscale >= 0) {
        opts[n++] = 1;
        opts[n++] = TCP_OPT_WSCALE;
        opts[n++] = 3;
        opts[n++] = fp->syn.rcv_wscale;
    }
    uint32_t thl = (uint32_t)sizeof(struct rte_tcp_hdr) + n;   /* n is a multiple of 4 */
    struct rte_ipv4_hdr *ip = fp_tx_ipv4(fp, m, f, thl, 0);
    if (ip == NULL)
        return NULL;
    struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + 1);
    tcp->src_port = rte_cpu_to_be_16(f->local_port);
    tcp->dst_port = rte_cpu_to_be_16(f->peer_port);
    tcp->sent_seq = rte_cpu_to_be_32(seq);
    tcp->recv_ack = rte_cpu_to_be_32(f->rx_next_seq);
    tcp->data_off = (uint8_t)((thl / 4) << 4);
    tcp->tcp_flags = tcp_flags;
    tcp->rx_win = rte_cpu_to_be_16(fp->syn.syn_window);
    tcp->cksum = 0;
    tcp->tcp_urp = 0;
    memcpy(tcp + 1, opts, n);
    tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);   /* fp_tx_ipv4 summed the IP header */
    return m;
}

/* Open the connection on l (its lock held): install the flow, tell the app,
 * queue the record.  The flow's id, or -1 with *why set. */
static int open_on(struct tas_fp *fp, struct fp_listener *l, const struct tas_flow_init *in,
                   uint32_t iss, uint16_t rec_flags, int *why)
{
    const struct tas_syn_buf *b = &l->pool[l->npool - 1];
    struct tas_flow_init init = *in;
    init.rx_base = b->rx_base;
    init.tx_base = b->tx_base;
    init.ctx = l->ctx;
    init.app_id = l->app_id;
    int id = fp_flow_install(fp, &init);
    if (id < 0) {
        *why = TAS_SYN_FB_FLOW_TABLE;
        return -1;
    }
    struct tas_arx e = {
        .type = TAS_ARX_NEWCONN,
        .flow_id = (uint32_t)id,
        .opaque = (uint64_t)in->peer_ip << 32 | (uint32_t)in->peer_port << 16 | in->local_port,
        .rx_bump = l->id,
        .rx_pos = b->rx_off,
        .tx_bump = b->tx_off,
    };
    if (fp_notify_newconn(fp, l->ctx, &e) != 0) {
        tas_fp_flow_remove(fp, (uint32_t)id);
        *why = TAS_SYN_FB_QUEUE_FULL;
        return -1;
    }
    struct tas_syn_opened rec = {
        .flow_id = (uint32_t)id, .listener_id = l->id, .iss = iss,
        .irs = in->rx_next_seq - 1, .rx_off = b->rx_off, .tx_off = b->tx_off,
        .peer_ip = in->peer_ip, .local_port = in->local_port, .peer_port = in->peer_port,
        .flags = rec_flags,
    };
    fp_listener_took(fp, l, &rec, in->peer_mac);
    return id;
}

bool fp_tcp_syn(struct fp_core *c, struct rte_mbuf *m)
{
    struct tas_fp *fp = c->fp;
    const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
    const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
    uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    uint32_t total = rte_be_to_cpu_16(ip->total_length);
    const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
    uint32_t thl = (tcp->data_off >> 4) * 4u;
    uint8_t flags = tcp->tcp_flags;
    if ((flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) != RTE_TCP_SYN_FLAG)
        return false;
    uint16_t dport = rte_be_to_cpu_16(tcp->dst_port), sport = rte_be_to_cpu_16(tcp->src_port);
    uint32_t peer_ip = rte_be_to_cpu_32(ip->src_addr);
    int why;
    struct fp_listener *l = fp_listener_pick(fp, dport, &why);
    if (l == NULL)
        return why >= 0 ? fallback(fp, why) : false;   /* no listener: RST, the slow way */
    struct fp_syn_opts so;
    if (ihl != sizeof(*ip) || total != ihl + thl ||
        (flags & ~(RTE_TCP_SYN_FLAG | RTE_TCP_ECE_FLAG | RTE_TCP_CWR_FLAG)) ||
        !fp_syn_parse_options((const uint8_t *)(tcp + 1), (const uint8_t *)tcp + thl, &so))
        return fallback(fp, TAS_SYN_FB_ODD);
    if (fp_syn_held(fp, peer_ip, dport, sport))
        return fallback(fp, TAS_SYN_FB_HELD);
    uint32_t seq = rte_be_to_cpu_32(tcp->sent_seq);
    uint32_t tw_rcv_nxt = 0;
    enum fp_tw tw = fp_syn_time_wait(fp, peer_ip, dport, sport, seq, &tw_rcv_nxt);
    if (tw == FP_TW_KEEP)
        return fallback(fp, TAS_SYN_FB_HELD);

    uint32_t iss = (uint32_t)rte_rand();
    bool ecn = fp->syn.ecn && (flags & (RTE_TCP_ECE_FLAG | RTE_TCP_CWR_FLAG)) ==
                              (RTE_TCP_ECE_FLAG | RTE_TCP_CWR_FLAG);
    struct tas_flow_init in = {
        .rx_size = fp->syn.rx_size,
        .tx_size = fp->syn.tx_size,
        .peer_ip = peer_ip,
        .local_port = dport,
        .peer_port = sport,
        .mss = fp_syn_mss(fp, &so),
        .snd_wscale = (uint8_t)(so.wscale >= 0 ? so.wscale : 0),
        .rcv_wscale = so.wscale >= 0 ? fp->syn.rcv_wscale : 0,
        .flags = TAS_FLF_SYNRCVD | TAS_FLF_QUIET | (so.ts ? TAS_FLF_TS : 0) |
                 (ecn ? TAS_FLF_ECN : 0) | (so.sack ? TAS_FLF_SACK : 0),
        .rx_next_seq = seq + 1,
        .tx_next_seq = iss + 1,
        .snd_wnd = rte_be_to_cpu_16(tcp->rx_win),     /* a SYN's window is never scaled */
        .ts_recent = so.ts ? so.tsval : 0,
    };
    memcpy(in.peer_mac, eth->src_addr.addr_bytes, sizeof(in.peer_mac));

    rte_spinlock_lock(&l->lock);
    int id = -1;
    bool kick = false;
    if (!l->active || l->port != dport)
        why = TAS_SYN_FB_NO_TAKER;          /* closed meanwhile */
    else if (l->npool == 0)
        why = TAS_SYN_FB_POOL_EMPTY;
    else if (waiting(l) >= l->backlog)
        why = TAS_SYN_FB_BACKLOG;
    else
        id = open_on(fp, l, &in, iss, tw == FP_TW_REUSED ? TAS_SYN_OPENED_TW_REUSED : 0, &why);
    if (id >= 0)   /* half the pool gone: ask for more, once per crossing */
        kick = l->npool * 2 == l->npool_hi || l->npool == 0;
    rte_spinlock_unlock(&l->lock);
    if (id < 0 && tw == FP_TW_REUSED)    /* the slow path has it: the pair is back */
        tas_fp_tw_add(fp, peer_ip, dport, sport, tw_rcv_nxt);
    if (id < 0)
        return fallback(fp, why);

    uint8_t synack_flags = RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | (ecn ? RTE_TCP_ECE_FLAG : 0);
    struct rte_mbuf *synack = fp_syn_frame(fp, tas_fp_flow(fp, (uint32_t)id), iss, synack_flags,
                                           &so);
    if (synack != NULL)
        fp_tx_one(c, synack);       /* if not, the slow path's timer resends it */
    rte_pktmbuf_free(m);
    kb_stats_add(fp->ctr.syn_fast, 1);
    if (kick) {
        kb_stats_add(fp->ctr.syn_kicks, 1);
        fp_sp_kick(fp);
    }
    return true;
}
