/*
 * The slow path's sweep over the connections the fast path opened
 * (include/tas/syn_sweep.h): the ones already over are closed here, in C,
 * the others wait in a list until the slow path takes them.
 *
 * Slow-path thread only: the list, and every call, are the slow path's
 * (fast-path cores only fill the ring the records come from).
 */
#include <stdlib.h>
#include <time.h>

#include "fp_internal.h"
#include "tas/syn_sweep.h"

struct fp_sweep_ent {
    struct tas_syn_opened rec;
    double collected_at;
    uint32_t seen;              /* a tick pass found it open */
};

struct fp_syn_sweep {
    uint32_t n;
    struct fp_sweep_ent ent[TAS_FLOW_MAX];   /* at most one per flow */
};

#define COLLECT_BATCH 64

int fp_syn_sweep_init(struct tas_fp *fp)
{
    fp->sweep = calloc(1, sizeof(*fp->sweep));
    return fp->sweep == NULL ? -1 : 0;
}

void fp_syn_sweep_free(struct tas_fp *fp)
{
    free(fp->sweep);
    fp->sweep = NULL;
}

uint32_t tas_fp_syn_pending_count(struct tas_fp *fp)
{
    return fp->sweep->n;
}

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Move the ring's records to the list. */
static uint32_t collect(struct tas_fp *fp, double now)
{
    struct fp_syn_sweep *sw = fp->sweep;
    struct tas_syn_opened recs[COLLECT_BATCH];
    uint32_t total = 0;
    for (;;) {
        unsigned room = TAS_FLOW_MAX - sw->n;
        unsigned n = rte_ring_sc_dequeue_burst_elem(fp->syn_opened, recs, sizeof(recs[0]),
                                                    RTE_MIN(room, (unsigned)COLLECT_BATCH), NULL);
        for (unsigned i = 0; i < n; i++) {
            struct fp_sweep_ent *e = &sw->ent[sw->n++];
            e->rec = recs[i];
            e->collected_at = now;
            e->seen = 0;
        }
        total += n;
        if (n < COLLECT_BATCH)
            return total;
    }
}

/* The active hand-over listener slot with this id, or -1. */
static int listener_slot(struct tas_fp *fp, uint32_t id, int *cache)
{
    if (*cache >= 0 && fp->listeners[*cache].id == id &&
        __atomic_load_n(&fp->listeners[*cache].active, __ATOMIC_ACQUIRE))
        return *cache;
    for (int i = 0; i < fp->listeners_hi; i++) {
        struct fp_listener *l = &fp->listeners[i];
        if (l->id == id && l->handoff && __atomic_load_n(&l->active, __ATOMIC_ACQUIRE))
            return *cache = i;
    }
    return -1;
}

static struct tas_syn_sweep_lst *lst_entry(struct tas_syn_sweep *s, uint32_t id)
{
    for (uint32_t i = 0; i < s->nlst; i++)
        if (s->lst[i].listener_id == id)
            return &s->lst[i];
    if (s->nlst == TAS_SYN_MAX_LISTENERS)
        return NULL;            /* (ids of removed listeners too: cannot fill) */
    struct tas_syn_sweep_lst *l = &s->lst[s->nlst++];
    l->listener_id = id;
    l->collected = l->closed = 0;
    return l;
}

static void note_peer(struct tas_syn_sweep *s, const struct tas_syn_opened *r)
{
    for (uint32_t i = 0; i < s->npeers; i++)
        if (s->peers[i].ip == r->peer_ip && memcmp(s->peers[i].mac, r->peer_mac, 6) == 0)
            return;
    if (s->npeers == TAS_SWEEP_PEERS)
        return;                 /* (a cache: the rest are learned another time) */
    s->peers[s->npeers].ip = r->peer_ip;
    memcpy(s->peers[s->npeers].mac, r->peer_mac, 6);
    s->peers[s->npeers].pad = 0;
    s->npeers++;
}

enum verdict { KEEP, CLOSE, HAND_OVER };

#define OVER_FLAGS (TAS_FLF_ACTIVE | TAS_FLF_QUIET | TAS_FLF_APP_CLOSED | \
                    TAS_FLF_TXFIN_ACKED | TAS_FLF_RXFIN)
#define RESET_OVER (TAS_FLF_ACTIVE | TAS_FLF_QUIET | TAS_FLF_APP_CLOSED)

/* What to do with the record's connection now; for CLOSE, the flow's flags
 * and sequence numbers at the close. */
static enum verdict judge(struct tas_fp *fp, const struct tas_syn_opened *r, uint32_t *flags,
                          uint32_t *snd_nxt, uint32_t *rcv_nxt)
{
    struct tas_flow *f = tas_fp_flow(fp, r->flow_id);
    if (f == NULL)
        return HAND_OVER;
    fp_lock(f);
    uint32_t fl = f->flags;
    bool same = f->peer_ip == r->peer_ip && f->local_port == r->local_port &&
                f->peer_port == r->peer_port;
    *snd_nxt = f->tx_una;
    *rcv_nxt = f->rx_next_seq;
    fp_unlock(f);
    *flags = fl;
    if (!same || !(fl & TAS_FLF_ACTIVE) || (fl & (TAS_FLF_RX_DISCARD | TAS_FLF_UNTOLD)))
        return HAND_OVER;       /* unread data, an app not told, or not what it
                                   was: Python's */
    if (fl & TAS_FLF_RESET)     /* by the peer (fp_tcp_rx): over once the app closed it */
        return (fl & RESET_OVER) == RESET_OVER ? CLOSE : KEEP;
    if ((fl & OVER_FLAGS) == OVER_FLAGS && !(fl & (TAS_FLF_SYNRCVD | TAS_FLF_SYNSENT)))
        return CLOSE;
    return KEEP;
}

/* Close an established connection both sides have closed: TIME_WAIT pair
 * first (a SYN for it then finds the flow or the pair, never neither),
 * then the flow, then the buffers.  False if the done array is full. */
static bool close_one(struct tas_fp *fp, struct tas_syn_sweep *s, const struct tas_syn_opened *r,
                      int slot, uint32_t fl, uint32_t snd_nxt, uint32_t rcv_nxt)
{
    uint16_t flags = (r->flags & TAS_SYN_OPENED_TW_REUSED) ? TAS_SWEPT_TW_REUSED : 0;
    bool reset = fl & TAS_FLF_RESET;     /* a RST ends it: no TIME_WAIT */
    bool tw = (s->mode & TAS_SWEEP_TIME_WAIT) && !(fl & TAS_FLF_PEER_FIN_FIRST) && !reset;
    struct tas_flow *f = tas_fp_flow(fp, r->flow_id);
    struct tas_syn_buf b = {.rx_base = f->rx_base, .tx_base = f->tx_base,
                            .rx_off = r->rx_off, .tx_off = r->tx_off};
    uint32_t cap = fp->listeners[slot].connector ? s->conn_pool_cap : s->pool_cap;
    bool recycle = tas_fp_listener_pool_count(fp, slot) < cap;
    if (s->ndone == s->done_max)
        return false;           /* (whether it will need an entry is known only later) */
    if (tw)
        flags |= TAS_SWEPT_TW;
    if (!recycle)
        flags |= TAS_SWEPT_RELEASE;
    if (tw && tas_fp_tw_add(fp, r->peer_ip, r->local_port, r->peer_port, rcv_nxt) != 0) {
        tas_fp_syn_hold(fp, r->peer_ip, r->local_port, r->peer_port, 1);
        flags |= TAS_SWEPT_TW_HELD;
    }
    tas_fp_flow_remove(fp, r->flow_id);
    if (recycle && tas_fp_listener_pool_push(fp, slot, &b) != 0) {
        flags |= TAS_SWEPT_RELEASE;
        recycle = false;
    }
    if (flags != 0) {
        struct tas_syn_swept *d = &s->done[s->ndone++];
        d->listener_id = r->listener_id;
        d->peer_ip = r->peer_ip;
        d->local_port = r->local_port;
        d->peer_port = r->peer_port;
        d->snd_nxt = snd_nxt;
        d->rcv_nxt = rcv_nxt;
        d->rx_off = r->rx_off;
        d->tx_off = r->tx_off;
        memcpy(d->peer_mac, r->peer_mac, 6);
        d->flags = flags;
    }
    s->closed++;
    s->recycled += recycle;
    s->time_wait += tw;
    s->tw_reused += (r->flags & TAS_SYN_OPENED_TW_REUSED) != 0;
    s->reset += reset;
    note_peer(s, r);
    return true;
}

void tas_fp_syn_sweep(struct tas_fp *fp, struct tas_syn_sweep *s)
{
    struct fp_syn_sweep *sw = fp->sweep;
    s->nopen = s->ndone = s->nlst = s->npeers = 0;
    s->collected = s->closed = s->recycled = s->time_wait = s->tw_reused = s->reset = s->more = 0;
    double now = monotonic_s();
    uint32_t first_new = sw->n;
    s->collected = collect(fp, now);
    for (uint32_t i = first_new; i < sw->n; i++) {
        struct tas_syn_sweep_lst *l = lst_entry(s, sw->ent[i].rec.listener_id);
        if (l != NULL)
            l->collected++;
    }
    int cache = -1;
    uint32_t kept = 0, i = 0;
    for (; i < sw->n; i++) {
        struct fp_sweep_ent *e = &sw->ent[i];
        uint32_t fl = 0, snd_nxt = 0, rcv_nxt = 0;
        enum verdict v = judge(fp, &e->rec, &fl, &snd_nxt, &rcv_nxt);
        int slot = listener_slot(fp, e->rec.listener_id, &cache);
        struct tas_syn_sweep_lst *l = lst_entry(s, e->rec.listener_id);
        if (slot < 0 || l == NULL)
            v = HAND_OVER;      /* its listener is going: Python's to sort out */
        if (v == KEEP && ((s->mode & TAS_SWEEP_ALL) || ((s->mode & TAS_SWEEP_TICK) && e->seen)))
            v = HAND_OVER;
        if (v == CLOSE) {
            if (!close_one(fp, s, &e->rec, slot, fl, snd_nxt, rcv_nxt))
                break;
            l->closed++;
            continue;
        }
        if (v == HAND_OVER) {
            if (s->nopen == s->open_max)
                break;
            s->open[s->nopen].rec = e->rec;
            s->open[s->nopen].collected_at = e->collected_at;
            s->nopen++;
            continue;
        }
        if (s->mode & TAS_SWEEP_TICK)
            e->seen = 1;
        sw->ent[kept++] = *e;
    }
    if (i < sw->n) {            /* an output array is full: the rest wait */
        s->more = 1;
        memmove(&sw->ent[kept], &sw->ent[i], (sw->n - i) * sizeof(sw->ent[0]));
        kept += sw->n - i;
    }
    sw->n = kept;
    s->pending = kept;
}
