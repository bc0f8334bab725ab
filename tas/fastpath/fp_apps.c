/*
 * Application contexts: commands from apps (consumed RX bytes, appended TX
 * bytes, close) and notifications to apps (new data, acknowledged data,
 * peer FIN).  Apps are untrusted: every command names a flow that must
 * belong to the context's application, and byte counts are bounds-checked.
 */
#include <string.h>
#include <sys/socket.h>

#include "fp_internal.h"

#define ATX_BURST 32
#define CTXQ_MASK (TAS_CTXQ_ENTRIES - 1u)

int tas_fp_ctx_add(struct tas_fp *fp, uint32_t app_id, void *rxq, void *txq,
                   uint32_t *app_sleeping, int wake_sock)
{
    for (uint16_t i = 0; i < FP_MAX_CTX; i++) {
        struct fp_ctx *x = &fp->ctxs[i];
        if (x->active)
            continue;
        x->app_id = app_id;
        x->bad = false;
        x->rxh = rxq;
        x->rx_slots = (struct tas_arx *)(x->rxh + 1);
        x->rx_prod = 0;
        rte_spinlock_init(&x->rx_lock);
        x->txh = txq;
        x->tx_slots = (struct tas_atx *)(x->txh + 1);
        x->tx_cons = 0;
        x->app_sleeping = app_sleeping;
        x->wake_sock = wake_sock;
        x->connector = -1;
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
    return core < fp->conf.ncores ? fp->cores[core].app_wake_tx : -1;
}

int tas_fp_ctx_bad(struct tas_fp *fp, uint16_t ctx)
{
    return ctx < FP_MAX_CTX && __atomic_load_n(&fp->ctxs[ctx].bad, __ATOMIC_ACQUIRE);
}

uint32_t tas_fp_bad_ctx_events(struct tas_fp *fp)
{
    return __atomic_load_n(&fp->bad_ctx_events, __ATOMIC_ACQUIRE);
}

/* The app wrote an index no honest producer/consumer can have: stop
 * touching its queues (once), count it, let the slow path detach it. */
static void ctx_mark_bad(struct tas_fp *fp, struct fp_ctx *x)
{
    if (__atomic_exchange_n(&x->bad, true, __ATOMIC_ACQ_REL))
        return;
    kb_stats_add(fp->ctr.app_bad_ctx, 1);
    __atomic_fetch_add(&fp->bad_ctx_events, 1, __ATOMIC_RELEASE);
}

static bool ctx_usable(struct fp_ctx *x)
{
    return __atomic_load_n(&x->active, __ATOMIC_ACQUIRE) &&
           !__atomic_load_n(&x->bad, __ATOMIC_ACQUIRE);
}

/* Wake the app: a datagram on our own end of its socketpair, never
 * blocking whatever the app did to its end.  EAGAIN means datagrams are
 * already queued: the app is woken anyway. */
static void wake_app(struct fp_ctx *x)
{
    char one = 1;
    ssize_t r = send(x->wake_sock, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)r;
}

/* Append one notification to the context's RX queue: 0, or -1 if full.
 * The app's consumer index is read once and checked against our own. */
static int rxq_push(struct tas_fp *fp, struct fp_ctx *x, const struct tas_arx *e)
{
    int r = -1;
    rte_spinlock_lock(&x->rx_lock);
    if (x->bad) {
        r = 0;                     /* dropped: the app is being detached */
        goto out;
    }
    uint32_t cons = __atomic_load_n(&x->rxh->cons, __ATOMIC_ACQUIRE);
    uint32_t used = x->rx_prod - cons;
    if (used > TAS_CTXQ_ENTRIES) {
        ctx_mark_bad(fp, x);
        r = 0;
        goto out;
    }
    if (used == TAS_CTXQ_ENTRIES)
        goto out;
    memcpy(&x->rx_slots[x->rx_prod & CTXQ_MASK], e, sizeof(*e));
    x->rx_prod++;
    __atomic_store_n(&x->rxh->prod, x->rx_prod, __ATOMIC_RELEASE);
    r = 0;
out:
    rte_spinlock_unlock(&x->rx_lock);
    return r;
}

/* Try to deliver the flow's pending notification (caller holds the lock). */
static void notify_pending(struct tas_fp *fp, struct tas_flow *f)
{
    struct fp_ctx *x = &fp->ctxs[f->ctx];
    if (!__atomic_load_n(&x->active, __ATOMIC_ACQUIRE))
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
    if (rxq_push(fp, x, &e) != 0) {
        /* Full queue: the app has work pending and will poll soon; keep
         * the counts and retry with the next packet or slow-path tick. */
        kb_stats_add(fp->ctr.notify_deferred, 1);
        __atomic_store_n(&fp->notify_retry, 1, __ATOMIC_RELEASE);
        return;
    }
    f->pend_rx_bump = f->pend_tx_bump = f->pend_flags = 0;
    if (__atomic_load_n(x->app_sleeping, __ATOMIC_SEQ_CST))
        wake_app(x);
}

int fp_notify_newconn(struct tas_fp *fp, uint16_t ctx, const struct tas_arx *e)
{
    if (ctx >= FP_MAX_CTX)
        return -1;
    struct fp_ctx *x = &fp->ctxs[ctx];
    /* rxq_push drops (returns 0) for a bad context: refuse before that */
    if (!ctx_usable(x) || rxq_push(fp, x, e) != 0)
        return -1;
    if (__atomic_load_n(x->app_sleeping, __ATOMIC_SEQ_CST))
        wake_app(x);
    return 0;
}

static void pend(struct tas_flow *f, uint32_t rx_bump, uint32_t rx_pos, uint32_t tx_bump,
                 uint32_t flags)
{
    if (f->pend_rx_bump == 0)
        f->pend_rx_pos = rx_pos;
    f->pend_rx_bump += rx_bump;
    f->pend_tx_bump += tx_bump;
    f->pend_flags |= flags;
}

void fp_notify_app(struct tas_fp *fp, struct tas_flow *f, uint32_t rx_bump,
                   uint32_t rx_pos, uint32_t tx_bump, uint32_t flags)
{
    pend(f, rx_bump, rx_pos, tx_bump, flags);
    if (f->pend_rx_bump || f->pend_tx_bump || f->pend_flags)
        notify_pending(fp, f);
}

/* Gather the notification (caller holds the flow's lock) and send one per
 * flow at the end of the RX burst (fp_notify_flush): one queue entry, and
 * at most one wake-up, for all the segments a burst brought it. */
void fp_notify_later(struct fp_core *c, struct tas_flow *f, uint32_t rx_bump,
                     uint32_t rx_pos, uint32_t tx_bump, uint32_t flags)
{
    pend(f, rx_bump, rx_pos, tx_bump, flags);
    for (unsigned i = c->nnotify_due; i-- > 0;)    /* the last one, mostly */
        if (c->notify_due[i] == f)
            return;
    if (c->nnotify_due < FP_RX_MAX)
        c->notify_due[c->nnotify_due++] = f;
    else if (f->pend_rx_bump || f->pend_tx_bump || f->pend_flags)
        notify_pending(c->fp, f);                  /* no room to remember it */
}

void fp_notify_flush(struct fp_core *c)
{
    for (unsigned i = 0; i < c->nnotify_due; i++) {
        struct tas_flow *f = c->notify_due[i];
        fp_lock(f);
        if ((f->flags & TAS_FLF_ACTIVE) && (f->pend_rx_bump || f->pend_tx_bump || f->pend_flags))
            notify_pending(c->fp, f);
        fp_unlock(f);
    }
    c->nnotify_due = 0;
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

/* false: a connect the slow path cannot take now (leave it queued) */
static bool app_command(struct fp_core *c, struct fp_ctx *x, const struct tas_atx *e,
                        fp_connect_fn on_connect)
{
    struct tas_fp *fp = c->fp;
    if (e->type == TAS_ATX_CONNECT)
        return on_connect(c, x, e);
    struct tas_flow *f = tas_fp_flow(fp, e->flow_id);
    if (e->type != TAS_ATX_CONNUPDATE || f == NULL) {
        kb_stats_add(fp->ctr.app_bad_cmd, 1);
        return true;
    }
    if (!(__atomic_load_n(&f->flags, __ATOMIC_ACQUIRE) & TAS_FLF_ACTIVE) &&
        f->app_id == x->app_id) {
        /* One of its own flows the daemon removed (reset) before the app
         * saw it go: libtas still gives back the window of data that came
         * for it meanwhile.  Harmless, not a bad command. */
        kb_stats_add(fp->ctr.app_cmd_flow_gone, 1);
        return true;
    }
    fp_lock(f);
    if (!(f->flags & TAS_FLF_ACTIVE) || f->app_id != x->app_id ||
        (uint64_t)f->rx_avail + e->rx_bump > f->rx_size ||
        (uint64_t)f->tx_sent + f->tx_avail + e->tx_bump > f->tx_size) {
        fp_unlock(f);
        kb_stats_add(fp->ctr.app_bad_cmd, 1);
        return true;
    }
    /* Advertise the opened window if the peer may be waiting on it. */
    uint32_t two_segs = 2u * fp_rx_mss(fp, f);
    bool window_was_low = f->rx_avail < two_segs;
    f->rx_avail += e->rx_bump;
    f->tx_avail += e->tx_bump;
    if (e->flags & TAS_ATX_FL_TXFIN)
        f->flags |= TAS_FLF_TXFIN;
    if (e->flags & TAS_ATX_FL_ACCEPTED)
        f->flags |= TAS_FLF_APP_ACCEPTED;
    if (e->flags & TAS_ATX_FL_CLOSED)   /* the slow path's tick takes it from here */
        tas_fp_flow_mark_closed(f);
    if (window_was_low && e->rx_bump > 0 && f->rx_avail >= two_segs)
        fp_tcp_send_ack(c, f);
    if (f->tx_avail > 0 || ((f->flags & TAS_FLF_TXFIN) && !(f->flags & TAS_FLF_TXFIN_SENT)))
        fp_flow_queue_tx(fp, f);
    fp_unlock(f);
    return true;
}

/* Commands the app has queued: its producer index, read once, checked
 * against our private consumer index (0..TAS_CTXQ_ENTRIES ahead), or -1. */
static int64_t txq_avail(struct fp_ctx *x)
{
    uint32_t prod = __atomic_load_n(&x->txh->prod, __ATOMIC_ACQUIRE);
    uint32_t avail = prod - x->tx_cons;
    return avail > TAS_CTXQ_ENTRIES ? -1 : (int64_t)avail;
}

/* Contexts of queue q are q, q + ncores, q + 2 ncores, ... */
unsigned fp_apps_poll(struct fp_core *c, uint16_t q, fp_connect_fn on_connect)
{
    struct tas_fp *fp = c->fp;
    unsigned work = 0;
    uint16_t hi = __atomic_load_n(&fp->ctx_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = q; i < hi; i += fp->conf.ncores) {
        struct fp_ctx *x = &fp->ctxs[i];
        if (!ctx_usable(x))
            continue;
        int64_t avail = txq_avail(x);
        if (avail < 0) {
            ctx_mark_bad(fp, x);
            continue;
        }
        unsigned n = avail < ATX_BURST ? (unsigned)avail : ATX_BURST;
        if (n == 0)
            continue;
        enum fp_stage prev = fp_stage_enter(c, FP_ST_APP);
        struct tas_atx cmds[ATX_BURST];
        /* Copy out first: the app may rewrite a slot while we look at it. */
        for (unsigned k = 0; k < n; k++)
            memcpy(&cmds[k], &x->tx_slots[(x->tx_cons + k) & CTXQ_MASK], sizeof(cmds[k]));
        unsigned done = 0;
        while (done < n && app_command(c, x, &cmds[done], on_connect))
            done++;
        x->tx_cons += done;
        __atomic_store_n(&x->txh->cons, x->tx_cons, __ATOMIC_RELEASE);
        fp_stage_leave(c, prev);
        work += done;
    }
    return work;
}

bool fp_apps_pending(struct tas_fp *fp, uint16_t q)
{
    uint16_t hi = __atomic_load_n(&fp->ctx_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = q; i < hi; i += fp->conf.ncores)
        if (ctx_usable(&fp->ctxs[i]) && txq_avail(&fp->ctxs[i]) != 0)
            return true;   /* commands, or a bad index the next poll catches */
    return false;
}
