/*
 * SACK-based recovery on the sending side.  The fast path keeps no
 * scoreboard: the TX buffer holds everything unacknowledged, and the peer's
 * ACK plus the lowest left edge of its SACK blocks name the first hole.
 * Fast retransmit resends that hole only (instead of going back to the last
 * ACK and resending everything in flight); each partial ACK in recovery
 * names the next hole, which goes out at once (no further three duplicate
 * ACKs).  Recovery ends when the ACK passes what was in flight when it
 * started.  A hole resent and lost again is left to the retransmission
 * timeout, which goes back to the last ACK as before.
 */
#include "fp_internal.h"

/* Bytes resent per ACK at most: a burst bounded like a TX visit. */
#define SACK_RESEND_SEGS 16

/* Resend from where recovery got to (or the ACK) up to `edge`. */
static void fill_hole(struct fp_core *c, struct tas_flow *f, uint32_t edge)
{
    uint32_t start = seq_diff(f->rexmit_hi, f->tx_una) > 0 ? f->rexmit_hi : f->tx_una;
    uint32_t sent_end = f->tx_una + f->tx_sent;
    if (seq_diff(edge, sent_end) > 0)
        edge = sent_end;                 /* only what is still counted as sent */
    if (seq_diff(edge, start) <= 0)
        return;
    uint32_t len = RTE_MIN((uint32_t)seq_diff(edge, start), SACK_RESEND_SEGS * (uint32_t)f->mss);
    uint32_t segs = fp_tcp_resend(c, f, start, start + len);
    f->rexmit_hi = start + len;
    kb_stats_add(c->fp->ctr.sack_rexmit_segs, segs);
}

bool fp_sack_dupack(struct fp_core *c, struct tas_flow *f, const struct fp_sack_info *si)
{
    if (!(f->flags & TAS_FLF_SACK) || !si->present)
        return false;
    if (!(f->flags & TAS_FLF_SACK_RECOV)) {
        f->flags |= TAS_FLF_SACK_RECOV;
        f->recover = f->tx_una + RTE_MAX(f->tx_sent, f->tx_sent_max);
        f->rexmit_hi = f->tx_una;
    }
    fill_hole(c, f, si->lowest);
    return true;
}

void fp_sack_newack(struct fp_core *c, struct tas_flow *f, const struct fp_sack_info *si)
{
    if (!(f->flags & TAS_FLF_SACK_RECOV))
        return;
    if (seq_diff(f->tx_una, f->recover) >= 0 || f->tx_sent == 0) {
        f->flags &= ~TAS_FLF_SACK_RECOV;
        return;
    }
    /* A partial ACK: the next hole starts at the ACK and ends at the
     * lowest SACK block, or (no block) is at least one segment long. */
    fill_hole(c, f, si->present ? si->lowest : f->tx_una + f->mss);
}
