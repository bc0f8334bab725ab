/*
 * connect() in the fast path (include/tas/synfast.h, "Connects in the fast
 * path"): no slow path between an app's connect and its SYN, nor between
 * the SYN-ACK and the app hearing that the connection is open.  The app's
 * TAS_ATX_CONNECT takes a flow's buffers from the app's connector (a pool
 * the slow path provisioned ahead, as for a hand-over listener), a free
 * ephemeral port, and the peer's MAC from the neighbour table; the flow is
 * installed quiet and TAS_FLF_SYNSENT, the SYN goes, and a record goes to
 * the slow path's sweep (which times the handshake if the SYN-ACK is late).
 * The SYN-ACK completes the flow here: options, our ACK, TAS_ARX_OPENED.
 * Whatever else is unusual goes to the slow path: the connect through a
 * ring (it answers with a CONN_OPENED), the segment as an exception.
 */
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_random.h>
#include <rte_tcp.h>

#include "fp_internal.h"

#define PORT_TRIES 16
#define SLOW_RING 16384

/* What a TAS_FLF_SYNSENT flow's SYN-ACK tells the app (by flow id). */
struct fp_connecting {
    uint32_t req_id;
    uint32_t rx_off, tx_off;
};

/* Counters before tas_fp_conn_stats gives them a page. */
static uint64_t sink;

int fp_connect_init(struct tas_fp *fp)
{
    fp->ctr.conn_fast = fp->ctr.conn_untold = &sink;
    for (int i = 0; i < TAS_CONN_FB_N; i++)
        fp->ctr.conn_fallback[i] = &sink;
    fp->connecting = rte_zmalloc("tas_connecting", sizeof(struct fp_connecting) * TAS_FLOW_MAX,
                                 RTE_CACHE_LINE_SIZE);
    fp->conn_next_port = (uint32_t)rte_rand();
    fp->conn_slow = rte_ring_create_elem("tas_connslow", sizeof(struct tas_conn_slow), SLOW_RING,
                                         (int)rte_socket_id(), RING_F_SC_DEQ);
    return fp->connecting == NULL || fp->conn_slow == NULL ? -1 : 0;
}

void fp_connect_free(struct tas_fp *fp)
{
    rte_free(fp->connecting);
    rte_ring_free(fp->conn_slow);
}

void tas_fp_conn_stats(struct tas_fp *fp, struct kb_stats_page *page)
{
    static const char *const why[TAS_CONN_FB_N] = {
        "no_connector", "pool_empty", "no_mac", "no_port", "flow_table", "addr"};
    fp->ctr.conn_fast = kb_stats_counter(page, "conn_fast");
    fp->ctr.conn_untold = kb_stats_counter(page, "conn_untold");
    fp_stats_by_reason(page, "conn_fallback_", why, TAS_CONN_FB_N, fp->ctr.conn_fallback);
}

int tas_fp_connector_add(struct tas_fp *fp, uint32_t listener_id, uint32_t app_id)
{
    return fp_listener_slot_add(fp, listener_id, 0, 0, app_id, 1, 0, NULL, true);
}

void tas_fp_ctx_connector(struct tas_fp *fp, uint16_t ctx, int slot)
{
    if (ctx < FP_MAX_CTX)
        __atomic_store_n(&fp->ctxs[ctx].connector, (int16_t)slot, __ATOMIC_RELEASE);
}

unsigned tas_fp_conn_slow(struct tas_fp *fp, struct tas_conn_slow *out, unsigned max)
{
    return rte_ring_sc_dequeue_burst_elem(fp->conn_slow, out, sizeof(*out), max, NULL);
}

/* May a connect take this 4-tuple?  (The flow table is checked by the
 * install itself.)  *reused: it takes a TIME_WAIT pair (which held
 * *tw_rcv_nxt). */
static bool tuple_free(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                       uint16_t peer_port, bool *reused, uint32_t *tw_rcv_nxt)
{
    if (fp_syn_held(fp, peer_ip, local_port, peer_port) || fp_listener_port(fp, local_port))
        return false;
    int tw = fp_tw_take_for_connect(fp, peer_ip, local_port, peer_port, tw_rcv_nxt);
    *reused = tw > 0;
    return tw >= 0;
}

/* Install the flow on a free port with the connector's last pool entry and
 * queue its record (l's lock held): its id, or -1 with *why set. */
static int open_active(struct tas_fp *fp, struct fp_listener *l, struct tas_flow_init *in,
                       uint32_t req_id, uint32_t iss, int *why)
{
    const struct tas_syn_buf *b = &l->pool[l->npool - 1];
    in->rx_base = b->rx_base;
    in->tx_base = b->tx_base;
    /* On from the port the last connect (any app's) took: the next ones
     * were taken longest ago, so their TIME_WAIT is the likeliest over
     * (random probes found no port once the range was mostly in
     * TIME_WAIT). */
    uint32_t range = (uint32_t)fp->syn.port_hi - fp->syn.port_lo + 1u;
    uint32_t start = __atomic_load_n(&fp->conn_next_port, __ATOMIC_RELAXED) % range;
    int id = -1;
    bool reused = false;
    uint32_t tw_rcv_nxt = 0;
    *why = TAS_CONN_FB_NO_PORT;
    for (uint32_t t = 0; t < PORT_TRIES && id < 0; t++) {
        in->local_port = (uint16_t)(fp->syn.port_lo + (start + t) % range);
        if (!tuple_free(fp, in->peer_ip, in->local_port, in->peer_port, &reused,
                        &tw_rcv_nxt))
            continue;
        id = fp_flow_install(fp, in);     /* -1: table full, or the 4-tuple taken */
        if (id < 0 && reused)             /* the pair goes back */
            tas_fp_tw_add(fp, in->peer_ip, in->local_port, in->peer_port, tw_rcv_nxt);
        if (id < 0)
            continue;
        /* The slow path holds a tuple before it checks the flow table for
         * it (tcp.py _ephemeral_port): one of us sees the other. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (fp_syn_held(fp, in->peer_ip, in->local_port, in->peer_port)) {
            tas_fp_flow_remove(fp, (uint32_t)id);
            id = -1;
            if (reused)
                tas_fp_tw_add(fp, in->peer_ip, in->local_port, in->peer_port, tw_rcv_nxt);
        }
    }
    __atomic_store_n(&fp->conn_next_port, (in->local_port - fp->syn.port_lo + 1u) % range,
                     __ATOMIC_RELAXED);
    if (id < 0) {
        if (tas_fp_flow_count(fp) >= TAS_FLOW_MAX)
            *why = TAS_CONN_FB_FLOW_TABLE;
        return -1;
    }
    fp->connecting[id] = (struct fp_connecting){.req_id = req_id, .rx_off = b->rx_off,
                                                .tx_off = b->tx_off};
    struct tas_syn_opened rec = {
        .flow_id = (uint32_t)id, .listener_id = l->id, .iss = iss, .irs = 0,
        .rx_off = b->rx_off, .tx_off = b->tx_off, .peer_ip = in->peer_ip,
        .local_port = in->local_port, .peer_port = in->peer_port,
        .flags = TAS_SYN_OPENED_ACTIVE | (reused ? TAS_SYN_OPENED_TW_REUSED : 0),
        .req_id = req_id,
    };
    fp_listener_took(fp, l, &rec, in->peer_mac);
    return id;
}

static bool to_slow_path(struct tas_fp *fp, struct fp_ctx *x, uint16_t ctx,
                         const struct tas_atx *e, int why)
{
    struct tas_conn_slow r = {.app_id = x->app_id, .ctx = ctx, .why = (uint16_t)why,
                              .req_id = e->flow_id, .peer_ip = e->rx_bump,
                              .peer_port = (uint16_t)e->tx_bump};
    if (rte_ring_mp_enqueue_elem(fp->conn_slow, &r, sizeof(r)) != 0) {
        fp_sp_kick(fp);
        return false;
    }
    kb_stats_add(fp->ctr.conn_fallback[why], 1);
    fp_sp_kick(fp);
    return true;
}

bool fp_tcp_connect(struct fp_core *c, struct fp_ctx *x, const struct tas_atx *e)
{
    struct tas_fp *fp = c->fp;
    uint16_t ctx = (uint16_t)(x - fp->ctxs);
    int16_t slot = __atomic_load_n(&x->connector, __ATOMIC_ACQUIRE);
    struct fp_listener *l = slot >= 0 && slot < TAS_SYN_MAX_LISTENERS ? &fp->listeners[slot]
                                                                      : NULL;
    struct tas_flow_init in = {
        .rx_size = fp->syn.rx_size,
        .tx_size = fp->syn.tx_size,
        .peer_ip = e->rx_bump,
        .peer_port = (uint16_t)e->tx_bump,
        .ctx = ctx,
        .app_id = x->app_id,
        .mss = fp->syn.mss,         /* until the SYN-ACK says */
        .flags = TAS_FLF_SYNSENT | TAS_FLF_QUIET,
    };
    int why = -1;
    if (l == NULL)
        why = TAS_CONN_FB_NO_CONNECTOR;
    else if (in.peer_ip == 0 || in.peer_ip == fp->conf.ip || in.peer_port == 0 ||
             e->tx_bump > UINT16_MAX || fp->syn.port_hi < fp->syn.port_lo)
        why = TAS_CONN_FB_ADDR;
    else if (!fp_neigh_get(fp, in.peer_ip, in.peer_mac))
        why = TAS_CONN_FB_NO_MAC;
    if (why >= 0)
        return to_slow_path(fp, x, ctx, e, why);

    uint32_t iss = (uint32_t)rte_rand();
    in.tx_next_seq = iss + 1;
    int id = -1;
    bool kick = false;
    rte_spinlock_lock(&l->lock);
    if (!l->active || !l->connector || l->app_id != x->app_id)
        why = TAS_CONN_FB_NO_CONNECTOR;
    else if (l->npool == 0)
        why = TAS_CONN_FB_POOL_EMPTY;
    else
        id = open_active(fp, l, &in, e->flow_id, iss, &why);
    if (id >= 0)   /* half the pool gone: ask for more, once per crossing */
        kick = l->npool * 2 == l->npool_hi || l->npool == 0;
    rte_spinlock_unlock(&l->lock);
    if (id < 0)
        return to_slow_path(fp, x, ctx, e, why);

    struct fp_syn_opts offer = {.wscale = 0, .sack = true, .ts = true, .tsval = 0};
    uint8_t flags = RTE_TCP_SYN_FLAG | (fp->syn.ecn ? RTE_TCP_ECE_FLAG | RTE_TCP_CWR_FLAG : 0);
    struct rte_mbuf *syn = fp_syn_frame(fp, tas_fp_flow(fp, (uint32_t)id), iss, flags, &offer);
    if (syn != NULL)
        fp_tx_one(c, syn);          /* if not, the slow path's timer resends it */
    kb_stats_add(fp->ctr.conn_fast, 1);
    if (kick) {
        kb_stats_add(fp->ctr.syn_kicks, 1);
        fp_sp_kick(fp);
    }
    return true;
}

uint32_t fp_tcp_synsent(struct fp_core *c, struct tas_flow *f, struct rte_mbuf *m)
{
    struct tas_fp *fp = c->fp;
    const struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *,
                                                            sizeof(struct rte_ether_hdr));
    uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    uint32_t total = rte_be_to_cpu_16(ip->total_length);
    const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
    uint32_t thl = (tcp->data_off >> 4) * 4u;
    uint8_t flags = tcp->tcp_flags;
    const uint8_t want = RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG;
    struct fp_syn_opts so;
    /* A RST (refused), a SYN alone (simultaneous open), data on the SYN-ACK,
     * a wrong ACK: the slow path's (it answers as tcp.py _on_synack). */
    if ((flags & (want | RTE_TCP_RST_FLAG | RTE_TCP_FIN_FLAG)) != want ||
        rte_be_to_cpu_32(tcp->recv_ack) != f->tx_una || total != ihl + thl ||
        !fp_syn_parse_options((const uint8_t *)(tcp + 1), (const uint8_t *)tcp + thl, &so))
        return TAS_EXC_TCP_CTRL;
    f->mss = fp_syn_mss(fp, &so);
    f->snd_wscale = (uint8_t)(so.wscale >= 0 ? so.wscale : 0);
    f->rcv_wscale = so.wscale >= 0 ? fp->syn.rcv_wscale : 0;
    f->flags |= (so.ts ? TAS_FLF_TS : 0) | (so.sack ? TAS_FLF_SACK : 0) |
                (fp->syn.ecn && (flags & RTE_TCP_ECE_FLAG) ? TAS_FLF_ECN : 0);
    f->rx_next_seq = rte_be_to_cpu_32(tcp->sent_seq) + 1;
    f->snd_wnd = rte_be_to_cpu_16(tcp->rx_win);      /* a SYN-ACK's is never scaled */
    f->ts_recent = so.ts ? so.tsval : 0;
    f->tx_progress_us = fp_now_us(fp);
    fp_tcp_send_ack(c, f);
    uint32_t id = fp_flow_id(fp, f);
    const struct fp_connecting *cn = &fp->connecting[id];
    struct tas_arx e = {
        .type = TAS_ARX_OPENED,
        .flow_id = id,
        .opaque = (uint64_t)f->peer_ip << 32 | (uint32_t)f->peer_port << 16 | f->local_port,
        .rx_bump = cn->req_id,
        .rx_pos = cn->rx_off,
        .tx_bump = cn->tx_off,
    };
    /* No room in the app's queue: the slow path tells it (the sweep hands
     * the flow over at once). */
    bool untold = fp_notify_newconn(fp, f->ctx, &e) != 0;
    /* SYNSENT goes last, in one store with UNTOLD: the slow path's tick
     * reads the flags without the lock (tcp.py _quietly_established) and
     * takes the connect as done, told or not, once SYNSENT is gone. */
    __atomic_store_n(&f->flags, (f->flags & ~TAS_FLF_SYNSENT) | (untold ? TAS_FLF_UNTOLD : 0),
                     __ATOMIC_RELEASE);
    if (untold) {
        kb_stats_add(fp->ctr.conn_untold, 1);
        fp_sp_kick(fp);
    }
    return FP_RX_CONSUMED;
}
