/*
 * The flow table: TAS_FLOW_MAX fixed slots of struct tas_flow, found by
 * 4-tuple through an rte_hash (reader/writer safe: the slow path is the only
 * writer, fast-path cores read).  Slots are reused in FIFO order, so a slot a
 * core may still be looking at is not handed out again soon; the ACTIVE flag,
 * checked under the flow lock, settles the rest.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_jhash.h>
#include <rte_malloc.h>

#include "fp_internal.h"

int fp_flows_init(struct tas_fp *fp)
{
    struct rte_hash_parameters hp = {
        .name = "tas_flows",
        .entries = TAS_FLOW_MAX * 2,
        .key_len = sizeof(struct fp_flow_key),
        .hash_func = rte_jhash,
        .socket_id = (int)rte_socket_id(),
        .extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY,
    };
    rte_spinlock_init(&fp->flow_wlock);
    fp->flow_hash = rte_hash_create(&hp);
    fp->flows = rte_zmalloc("tas_flowst", sizeof(struct tas_flow) * TAS_FLOW_MAX,
                            RTE_CACHE_LINE_SIZE);
    fp->flow_free = rte_malloc("tas_flowfree", sizeof(uint32_t) * TAS_FLOW_MAX, 0);
    if (fp->flow_hash == NULL || fp->flows == NULL || fp->flow_free == NULL ||
        fp_idle_init(fp) != 0)
        return -1;
    /* Only the first max_flows slots ever go round the free list. */
    uint32_t n = fp->conf.max_flows ? fp->conf.max_flows : TAS_FLOW_MAX;
    for (uint32_t i = 0; i < n; i++)
        fp->flow_free[i] = i;
    fp->flow_free_head = 0;
    fp->flow_free_count = n;
    for (uint16_t c = 0; c < fp->conf.ncores; c++) {
        char name[32];
        snprintf(name, sizeof(name), "tas_txw%u", c);
        fp->tx_work[c] = rte_ring_create_elem(name, sizeof(uint32_t), TAS_FLOW_MAX,
                                              (int)rte_socket_id(), RING_F_SC_DEQ);
        if (fp->tx_work[c] == NULL)
            return -1;
    }
    return 0;
}

void fp_flows_free(struct tas_fp *fp)
{
    rte_hash_free(fp->flow_hash);
    rte_free(fp->flows);
    rte_free(fp->flow_free);
    fp_idle_free(fp);
    for (uint16_t c = 0; c < TAS_FP_MAX_CORES; c++)
        rte_ring_free(fp->tx_work[c]);
}

struct tas_flow *fp_flow_find(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                              uint16_t peer_port)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    void *data;
    if (rte_hash_lookup_data(fp->flow_hash, &k, &data) < 0)
        return NULL;
    return &fp->flows[(uintptr_t)data];
}

int tas_fp_flow_lookup(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                       uint16_t peer_port)
{
    struct tas_flow *f = fp_flow_find(fp, peer_ip, local_port, peer_port);
    return f == NULL ? -1 : (int)fp_flow_id(fp, f);
}

int tas_fp_flow_add(struct tas_fp *fp, const struct tas_flow_init *in)
{
    return fp_flow_install(fp, in);
}

static int flow_install_locked(struct tas_fp *fp, const struct tas_flow_init *in)
{
    if (fp->flow_free_count == 0 || in->rx_size == 0 || in->tx_size == 0)
        return -1;
    struct fp_flow_key k = fp_flow_key(in->peer_ip, in->local_port, in->peer_port);
    if (rte_hash_lookup(fp->flow_hash, &k) >= 0)
        return -1;
    uint32_t id = fp->flow_free[fp->flow_free_head];
    struct tas_flow *f = &fp->flows[id];
    fp_lock(f);
    int32_t lock = f->lock;
    memset(f, 0, sizeof(*f));
    f->lock = lock;
    f->opaque = in->opaque;
    f->rx_base = in->rx_base;
    f->tx_base = in->tx_base;
    f->rx_size = in->rx_size;
    f->tx_size = in->tx_size;
    f->local_ip = fp->conf.ip;
    f->peer_ip = in->peer_ip;
    f->local_port = in->local_port;
    f->peer_port = in->peer_port;
    memcpy(f->peer_mac, in->peer_mac, sizeof(f->peer_mac));
    f->ctx = in->ctx;
    f->app_id = in->app_id;
    f->mss = in->mss;
    f->snd_wscale = in->snd_wscale;
    f->rcv_wscale = in->rcv_wscale;
    f->queue = (uint16_t)(id % fp->conf.ncores);
    f->flags = TAS_FLF_ACTIVE | (in->flags & (TAS_FLF_TS | TAS_FLF_ECN | TAS_FLF_SACK |
                                              TAS_FLF_SYNRCVD | TAS_FLF_SYNSENT |
                                              TAS_FLF_QUIET));
    f->rx_next_seq = in->rx_next_seq;
    f->rx_avail = in->rx_size;
    f->tx_una = in->tx_next_seq;
    f->snd_wnd = in->snd_wnd;
    f->ts_recent = in->ts_recent;
    f->tx_rate_kbps = in->tx_rate_kbps;
    fp_unlock(f);
    if (rte_hash_add_key_data(fp->flow_hash, &k, (void *)(uintptr_t)id) != 0) {
        f->flags = 0;
        return -1;
    }
    fp->flow_free_head = (fp->flow_free_head + 1) % TAS_FLOW_MAX;
    fp->flow_free_count--;
    fp->nflows++;
    kb_stats_add(fp->ctr.flows_added, 1);
    return (int)id;
}

/* The slow path and cores answering SYNs both write the table and the
 * free list: one writer at a time (readers need no lock: rte_hash). */
int fp_flow_install(struct tas_fp *fp, const struct tas_flow_init *in)
{
    rte_spinlock_lock(&fp->flow_wlock);
    int id = flow_install_locked(fp, in);
    rte_spinlock_unlock(&fp->flow_wlock);
    return id;
}

static void flow_remove_locked(struct tas_fp *fp, uint32_t id)
{
    struct tas_flow *f = &fp->flows[id];
    struct fp_flow_key k = fp_flow_key(f->peer_ip, f->local_port, f->peer_port);
    rte_hash_del_key(fp->flow_hash, &k);
    fp_lock(f);
    f->flags = 0;
    fp_unlock(f);
    uint32_t tail = (fp->flow_free_head + fp->flow_free_count) % TAS_FLOW_MAX;
    fp->flow_free[tail] = id;
    fp->flow_free_count++;
    fp->nflows--;
    kb_stats_add(fp->ctr.flows_removed, 1);
}

void tas_fp_flow_remove(struct tas_fp *fp, uint32_t id)
{
    if (id >= TAS_FLOW_MAX)
        return;
    rte_spinlock_lock(&fp->flow_wlock);
    if (fp->flows[id].flags & TAS_FLF_ACTIVE)
        flow_remove_locked(fp, id);
    rte_spinlock_unlock(&fp->flow_wlock);
    /* (a core removes only a flow it has just installed: never parked) */
    tas_fp_flow_unpark(fp, id);
}

struct tas_flow *tas_fp_flow(struct tas_fp *fp, uint32_t id)
{
    return id < TAS_FLOW_MAX ? &fp->flows[id] : NULL;
}

uint32_t tas_fp_flow_count(struct tas_fp *fp)
{
    return fp->nflows;
}

void tas_fp_flow_lock(struct tas_flow *f)
{
    fp_lock(f);
}

void tas_fp_flow_unlock(struct tas_flow *f)
{
    fp_unlock(f);
}

/* Put a flow on its queue's TX work list (caller holds the flow lock). */
void fp_flow_queue_tx(struct tas_fp *fp, struct tas_flow *f)
{
    if (f->tx_queued)
        return;
    uint32_t id = fp_flow_id(fp, f);
    if (rte_ring_mp_enqueue_elem(fp->tx_work[f->queue], &id, sizeof(id)) == 0) {
        f->tx_queued = 1;
        fp_queue_wake(fp, f->queue);
    }
}

void tas_fp_flow_mark_closed(struct tas_flow *f)
{
    /* The close's own command gave back everything the app had read
     * (libtas releases it all on close): what is left is unread, and the
     * connection ends with a RST alone, no FIN (nor more data) first. */
    f->flags |= TAS_FLF_APP_CLOSED | ((f->flags & TAS_FLF_RXFIN) ? TAS_FLF_PEER_FIN_FIRST : 0);
    if (f->flags & TAS_FLF_RESET) {
        f->flags &= ~TAS_FLF_TXFIN;   /* reset by the peer: nothing more to send, no RST */
        return;
    }
    if (f->rx_avail < f->rx_size) {
        f->flags |= TAS_FLF_RX_DISCARD;
        if (!(f->flags & TAS_FLF_TXFIN_SENT))
            f->flags &= ~TAS_FLF_TXFIN;
    }
}

void fp_flow_go_back(struct tas_flow *f)
{
    f->tx_avail += f->tx_sent;
    f->tx_sent = 0;
    f->flags &= ~(TAS_FLF_TXFIN_SENT | TAS_FLF_SACK_RECOV);
}

void tas_fp_flow_retransmit(struct tas_fp *fp, uint32_t id)
{
    struct tas_flow *f = tas_fp_flow(fp, id);
    if (f == NULL)
        return;
    fp_lock(f);
    if ((f->flags & TAS_FLF_ACTIVE) && f->tx_sent > 0) {
        fp_flow_go_back(f);
        f->tx_next_tsc = 0;
        f->rto_ts_us = fp_now_us(fp) | 1;      /* never 0: 0 means none pending */
        f->rto_pending++;
        kb_stats_add(fp->ctr.rto_rexmits, 1);
        fp_flow_queue_tx(fp, f);
    } else if ((f->flags & TAS_FLF_TXFIN_SENT) && !(f->flags & TAS_FLF_TXFIN_ACKED)) {
        f->flags &= ~TAS_FLF_TXFIN_SENT;
        kb_stats_add(fp->ctr.rto_rexmits, 1);
        fp_flow_queue_tx(fp, f);
    }
    fp_unlock(f);
}

/* A flow that sent ahead of its rate waits until the rate has paid that
 * off (fp_tcp_tx.c); a new rate pays off what is left at the new rate.
 * Otherwise a new flow's first burst (16 segments, 143 KB with jumbo
 * frames) at the initial 10 Mbps kept it silent for 110 ms however fast
 * slow start then raised the rate (issue 14: the first 0.25 s of a bulk
 * transfer over memif carried 20 MB/s, the rest 3-7 GB/s).  Counted in
 * tcp_rate_waits_rescaled. */
void tas_fp_flow_set_rate(struct tas_fp *fp, uint32_t id, uint32_t kbps)
{
    struct tas_flow *f = tas_fp_flow(fp, id);
    if (f == NULL)
        return;
    fp_lock(f);
    uint32_t old = f->tx_rate_kbps;
    uint64_t now = rte_get_tsc_cycles();
    if (old != 0 && kbps != 0 && kbps != old && f->tx_next_tsc > now) {
        f->tx_next_tsc = now + (f->tx_next_tsc - now) * old / kbps;
        kb_stats_add(fp->ctr.rate_waits_rescaled, 1);
    }
    __atomic_store_n(&f->tx_rate_kbps, kbps, __ATOMIC_RELAXED);
    fp_unlock(f);
}
