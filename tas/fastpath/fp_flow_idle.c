/*
 * Idle flows for the slow path's tick (include/tas/flow.h, "Idle flows").
 *
 * The tick used to look at every connection every 10 ms: 3.7 us of Python
 * each, so a server holding thousands of idle keep-alive clients kept a CPU
 * busy for nothing.  The slow path now parks a flow it found idle, and this
 * file tells it, once a tick, which parked flows changed since: a compare of
 * a few fields against the snapshot taken when the slow path last looked,
 * tens of nanoseconds a flow instead of microseconds.
 *
 * Slow-path state only (no core touches it): the snapshot array, the dense
 * list of parked ids and each id's place in it.
 */
#include <stdlib.h>

#include "fp_internal.h"

/* What the tick reads on an idle flow and what would make it act: the
 * close handshake and app flags, data queued or in flight, ACKs and their
 * feedback (congestion control, timeouts), data received (the timestamp
 * refresh's activity). */
struct fp_idle_snap {
    uint64_t cnt_ackb, cnt_ecnb, cnt_txb;
    uint32_t flags, rx_next_seq, tx_una, tx_avail, tx_sent, rtt_est_us, rto_ts_us;
    uint32_t cnt_frexmits, cnt_spurious_rto;
    uint32_t zero;      /* no padding: compared with memcmp */
};
_Static_assert(sizeof(struct fp_idle_snap) == 3 * 8 + 10 * 4, "fp_idle_snap has padding");

struct fp_idle {
    struct fp_idle_snap snap[TAS_FLOW_MAX];
    uint32_t pos[TAS_FLOW_MAX];         /* 1 + index in parked[], 0: not parked */
    uint32_t parked[TAS_FLOW_MAX];
    uint32_t nparked;
};

/* Flags the fast path sets and clears on its own (the ACK it owes, an ECN
 * echo): no reason for the slow path to look. */
#define IDLE_TRANSIENT_FLAGS (TAS_FLF_ACKNOW | TAS_FLF_ACK_DUE | TAS_FLF_CE_SEEN)

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

int fp_idle_init(struct tas_fp *fp)
{
    fp->idle = calloc(1, sizeof(*fp->idle));
    return fp->idle == NULL ? -1 : 0;
}

void fp_idle_free(struct tas_fp *fp)
{
    free(fp->idle);
    fp->idle = NULL;
}

static void take_snap(const struct tas_flow *f, struct fp_idle_snap *s)
{
    s->cnt_ackb = LOAD(f->cnt_ackb);
    s->cnt_ecnb = LOAD(f->cnt_ecnb);
    s->cnt_txb = LOAD(f->cnt_txb);
    s->flags = LOAD(f->flags) & ~IDLE_TRANSIENT_FLAGS;
    s->rx_next_seq = LOAD(f->rx_next_seq);
    s->tx_una = LOAD(f->tx_una);
    s->tx_avail = LOAD(f->tx_avail);
    s->tx_sent = LOAD(f->tx_sent);
    s->rtt_est_us = LOAD(f->rtt_est_us);
    s->rto_ts_us = LOAD(f->rto_ts_us);
    s->cnt_frexmits = LOAD(f->cnt_frexmits);
    s->cnt_spurious_rto = LOAD(f->cnt_spurious_rto);
    s->zero = 0;
}

static bool changed(const struct tas_flow *f, const struct fp_idle_snap *s)
{
    struct fp_idle_snap now;
    take_snap(f, &now);
    return now.tx_avail != 0 || now.tx_sent != 0 || memcmp(&now, s, sizeof(now)) != 0;
}

void tas_fp_flow_snap(struct tas_fp *fp, uint32_t id)
{
    if (id < TAS_FLOW_MAX)
        take_snap(&fp->flows[id], &fp->idle->snap[id]);
}

int tas_fp_flow_park(struct tas_fp *fp, uint32_t id)
{
    struct fp_idle *st = fp->idle;
    if (id >= TAS_FLOW_MAX || st->pos[id] != 0)
        return -1;
    st->parked[st->nparked++] = id;
    st->pos[id] = st->nparked;
    return 0;
}

void tas_fp_flow_unpark(struct tas_fp *fp, uint32_t id)
{
    struct fp_idle *st = fp->idle;
    if (id >= TAS_FLOW_MAX || st->pos[id] == 0)
        return;
    uint32_t i = st->pos[id] - 1, last = st->parked[--st->nparked];
    st->parked[i] = last;
    st->pos[last] = i + 1;
    st->pos[id] = 0;
}

uint32_t tas_fp_flows_woken(struct tas_fp *fp, uint32_t *out, uint32_t max)
{
    struct fp_idle *st = fp->idle;
    uint32_t n = 0, i = 0;
    while (i < st->nparked && n < max) {
        uint32_t id = st->parked[i];
        if (changed(&fp->flows[id], &st->snap[id])) {
            out[n++] = id;
            tas_fp_flow_unpark(fp, id);     /* moves the last one to i */
        } else {
            i++;
        }
    }
    return n;
}

uint32_t tas_fp_parked_count(struct tas_fp *fp)
{
    return fp->idle->nparked;
}
