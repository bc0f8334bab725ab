/*
 * Application contexts: commands from apps (consumed RX bytes, appended TX
 * bytes, close) and notifications to apps (new data, acknowledged data,
 * peer FIN).  Apps are untrusted: every command names a flow that must
 * belong to the context's application, and byte counts are bounds-checked.
 */
#include <unistd.h>

#include "fp_internal.h"

#define ATX_BURST 32

int tas_fp_ctx_add(struct tas_fp *fp, uint32_t app_id, void *rxq, void *txq,
                   uint32_t *app_sleeping, int app_evfd)
{
    for (uint16_t i = 0; i < FP_MAX_CTX; i++) {
        struct fp_ctx *x = &fp->ctxs[i];
        if (x->active)
            continue;
        x->app_id = app_id;
        x->rxq = rxq;
        x->txq = txq;
        x->app_sleeping = app_sleeping;
        x->app_evfd = app_evfd;
        x->queue = (uint16_t)(i % fp->conf.ncores);
        __atomic_store_n(&x->active, true, __ATOMIC_RELEASE);
        if (i + 1 > fp->ctx_hi)    /* cores scan contexts only up to here */
            __atomic_store_n(&fp->ctx_hi, (uint16_t)(i + 1), __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

void tas_fp_ctx_remove(struct tas_fp *fp, uint16_t ctx)
{
    if (ctx < FP_MAX_CTX)
        __atomic_store_n(&fp->ctxs[ctx].active, false, __ATOMIC_RELEASE);
}

uint16_t tas_fp_ctx_queue(struct tas_fp *fp, uint16_t ctx)
{
    return ctx < FP_MAX_CTX ? fp->ctxs[ctx].queue : 0;
}

int tas_fp_core_wake_fd(struct tas_fp *fp, uint16_t core)
{
    return core < fp->conf.ncores ? fp->cores[core].wake_fd : -1;
}

/* Try to deliver the flow's pending notification (caller holds the lock). */
static void notify_pending(struct tas_fp *fp, struct tas_flow *f)
{
    struct fp_ctx *x = &fp->ctxs[f->ctx];
    if (!x->active)
        return;
    struct tas_arx e = {
        .type = TAS_ARX_CONNUPDATE,
        .flags = (uint16_t)f->pend_flags,
        .flow_id = fp_flow_id(fp, f),
        .opaque = f->opaque,
        .rx_bump = f->pend_rx_bump,
        .rx_pos = f->pend_rx_pos,
        .tx_bump = f->pend_tx_bump,
    };
    if (rte_ring_mp_enqueue_elem(x->rxq, &e, sizeof(e)) != 0) {
        /* Full queue: the app has work pending and will poll soon; keep
         * the counts and retry with the next packet or slow-path tick. */
        kb_stats_add(fp->ctr.notify_deferred, 1);
        __atomic_store_n(&fp->notify_retry, 1, __ATOMIC_RELEASE);
        return;
    }
    f->pend_rx_bump = f->pend_tx_bump = f->pend_flags = 0;
    if (__atomic_load_n(x->app_sleeping, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t r = write(x->app_evfd, &one, sizeof(one));
        (void)r;
    }
}

void fp_notify_app(struct tas_fp *fp, struct tas_flow *f, uint32_t rx_bump,
                   uint32_t rx_pos, uint32_t tx_bump, uint32_t flags)
{
    if (f->pend_rx_bump == 0)
        f->pend_rx_pos = rx_pos;
    f->pend_rx_bump += rx_bump;
    f->pend_tx_bump += tx_bump;
    f->pend_flags |= flags;
    if (f->pend_rx_bump || f->pend_tx_bump || f->pend_flags)
        notify_pending(fp, f);
}

void tas_fp_flush_notifications(struct tas_fp *fp)
{
    /* Scanning the whole table costs; only do it after a deferral. */
    if (!__atomic_exchange_n(&fp->notify_retry, 0, __ATOMIC_ACQ_REL))
        return;
    for (uint32_t i = 0; i < TAS_FLOW_MAX; i++) {
        struct tas_flow *f = &fp->flows[i];
        if (!(f->flags & TAS_FLF_ACTIVE) ||
            !(f->pend_rx_bump || f->pend_tx_bump || f->pend_flags))
            continue;
        fp_lock(f);
        if (f->flags & TAS_FLF_ACTIVE)
            notify_pending(fp, f);
        fp_unlock(f);
    }
}

static void app_command(struct fp_core *c, struct fp_ctx *x, const struct tas_atx *e)
{
    struct tas_fp *fp = c->fp;
    struct tas_flow *f = tas_fp_flow(fp, e->flow_id);
    if (e->type != TAS_ATX_CONNUPDATE || f == NULL) {
        kb_stats_add(fp->ctr.app_bad_cmd, 1);
        return;
    }
    fp_lock(f);
    if (!(f->flags & TAS_FLF_ACTIVE) || f->app_id != x->app_id ||
        (uint64_t)f->rx_avail + e->rx_bump > f->rx_size ||
        (uint64_t)f->tx_sent + f->tx_avail + e->tx_bump > f->tx_size) {
        fp_unlock(f);
        kb_stats_add(fp->ctr.app_bad_cmd, 1);
        return;
    }
    /* Advertise the opened window if the peer may be waiting on it. */
    bool window_was_low = f->rx_avail < 2u * f->mss;
    f->rx_avail += e->rx_bump;
    f->tx_avail += e->tx_bump;
    if (e->flags & TAS_ATX_FL_TXFIN)
        f->flags |= TAS_FLF_TXFIN;
    if (window_was_low && e->rx_bump > 0 && f->rx_avail >= 2u * f->mss)
        fp_tcp_send_ack(c, f);
    if (f->tx_avail > 0 || ((f->flags & TAS_FLF_TXFIN) && !(f->flags & TAS_FLF_TXFIN_SENT)))
        fp_flow_queue_tx(fp, f);
    fp_unlock(f);
}

/* Contexts of queue q are q, q + ncores, q + 2 ncores, ... */
unsigned fp_apps_poll(struct fp_core *c, uint16_t q)
{
    struct tas_fp *fp = c->fp;
    unsigned work = 0;
    uint16_t hi = __atomic_load_n(&fp->ctx_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = q; i < hi; i += fp->conf.ncores) {
        struct fp_ctx *x = &fp->ctxs[i];
        if (!__atomic_load_n(&x->active, __ATOMIC_ACQUIRE))
            continue;
        struct tas_atx cmds[ATX_BURST];
        unsigned n = rte_ring_sc_dequeue_burst_elem(x->txq, cmds, sizeof(cmds[0]),
                                                    ATX_BURST, NULL);
        for (unsigned k = 0; k < n; k++)
            app_command(c, x, &cmds[k]);
        work += n;
    }
    return work;
}

bool fp_apps_pending(struct tas_fp *fp, uint16_t q)
{
    uint16_t hi = __atomic_load_n(&fp->ctx_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = q; i < hi; i += fp->conf.ncores)
        if (__atomic_load_n(&fp->ctxs[i].active, __ATOMIC_ACQUIRE) &&
            !rte_ring_empty(fp->ctxs[i].txq))
            return true;
    return false;
}

int64_t tas_ring_memsize(uint32_t esize, uint32_t count)
{
    return rte_ring_get_memsize_elem(esize, count);
}

int tas_ring_init(void *mem, const char *name, uint32_t count, int sp_sc)
{
    unsigned flags = RING_F_SC_DEQ | (sp_sc ? RING_F_SP_ENQ : 0);
    return rte_ring_init(mem, name, count, flags);
}
