/*
 * RFC 5961 for installed flows: a RST must carry exactly the next expected
 * sequence number to close the connection; one elsewhere in the receive
 * window only earns a challenge ACK, one outside it is ignored.  A SYN on a
 * synchronized connection also earns a challenge ACK.  Challenge ACKs are
 * rate-limited per flow and per second in all, as Linux does
 * (tcp_invalid_ratelimit, tcp_challenge_ack_limit), so that a blind attacker
 * cannot make us flood, or learn from our ACK rate.
 */
#include "fp_internal.h"

static bool challenge_allowed(struct tas_fp *fp, struct tas_flow *f)
{
    uint32_t now = fp_now_us(fp);
    uint32_t gap = fp->conf.invalid_ratelimit_ms * 1000u;
    if (f->challenge_us != 0 && now - f->challenge_us < gap)
        return false;
    /* The per-second budget is shared by all cores; a lost race at a second
     * boundary costs at most one extra ACK. */
    uint32_t sec = now / 1000000u;
    if (__atomic_load_n(&fp->challenge_sec, __ATOMIC_RELAXED) != sec) {
        __atomic_store_n(&fp->challenge_sec, sec, __ATOMIC_RELAXED);
        __atomic_store_n(&fp->challenge_count, 0, __ATOMIC_RELAXED);
    }
    if (__atomic_fetch_add(&fp->challenge_count, 1, __ATOMIC_RELAXED) >=
        fp->conf.challenge_ack_limit)
        return false;
    f->challenge_us = now ? now : 1;
    return true;
}

void fp_tcp_challenge_ack(struct fp_core *c, struct tas_flow *f)
{
    if (challenge_allowed(c->fp, f)) {
        kb_stats_add(c->fp->ctr.challenge_acks, 1);
        fp_tcp_send_ack(c, f);
    } else {
        kb_stats_add(c->fp->ctr.challenge_limited, 1);
    }
}

bool fp_tcp_rst_exact(struct fp_core *c, struct tas_flow *f, uint32_t seq)
{
    int32_t off = seq_diff(seq, f->rx_next_seq);
    if (off == 0)
        return true;
    if (off > 0 && (uint32_t)off <= f->rx_avail)
        fp_tcp_challenge_ack(c, f);
    else
        kb_stats_add(c->fp->ctr.rst_ignored, 1);
    return false;
}
