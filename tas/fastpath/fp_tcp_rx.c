/*
 * Receive for an installed flow: ACK processing (free TX space, duplicate
 * ACKs and fast retransmit, RTT from timestamps, ECN feedback) and payload
 * placement straight into the flow's RX buffer, with one out-of-order
 * interval.  The caller holds the flow's lock, across a run of the flow's
 * segments in a burst (each lock is a locked instruction, which waits for
 * the payload just copied into the RX buffer to leave the store buffer).
 * Returns FP_RX_CONSUMED (the caller frees the frame, in bulk), or the reason the slow path must see
 * the packet too: TAS_EXC_TCP_FLOW after processing it here (an exact RST,
 * the peer's FIN), TAS_EXC_TCP_CTRL for a flow no longer taking segments.
 */
#include <string.h>

#include <rte_ip.h>
#include <rte_tcp.h>

#include "fp_internal.h"

struct seg {
    uint32_t peer_ip;
    uint16_t local_port, peer_port;
    uint32_t seq, ack, len, tsval, tsecr;
    uint16_t win;
    uint8_t flags;
    bool has_ts, ce;
    const uint8_t *payload;
    struct fp_sack_info sack;
};

/* glibc's memcpy (AVX where the CPU has it): DPDK's inline rte_memcpy is
 * built for -march=corei7 (SSE) here */
static void ring_write(uint8_t *base, uint32_t size, uint32_t pos, const uint8_t *src, uint32_t len)
{
    uint32_t first = RTE_MIN(len, size - pos);
    memcpy(base + pos, src, first);
    if (len > first)
        memcpy(base, src + first, len - first);
}

/* Parse a segment fp_classify validated (lengths, offset, checksum);
 * false if its options are malformed. */
static bool parse(struct rte_mbuf *m, struct seg *s)
{
    struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *,
                                                      sizeof(struct rte_ether_hdr));
    uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    uint32_t total = rte_be_to_cpu_16(ip->total_length);
    struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)((uint8_t *)ip + ihl);
    uint32_t thl = (tcp->data_off >> 4) * 4u;
    s->peer_ip = rte_be_to_cpu_32(ip->src_addr);
    s->local_port = rte_be_to_cpu_16(tcp->dst_port);
    s->peer_port = rte_be_to_cpu_16(tcp->src_port);
    s->seq = rte_be_to_cpu_32(tcp->sent_seq);
    s->ack = rte_be_to_cpu_32(tcp->recv_ack);
    s->win = rte_be_to_cpu_16(tcp->rx_win);
    s->flags = tcp->tcp_flags;
    s->len = total - ihl - thl;
    s->payload = (const uint8_t *)tcp + thl;
    s->ce = (ip->type_of_service & 0x03) == 0x03;
    s->has_ts = false;
    s->tsval = s->tsecr = 0;
    s->sack.present = false;
    const uint8_t *end = (const uint8_t *)tcp + thl;
    bool bad = false;
    for (const uint8_t *o = fp_tcp_opt((const uint8_t *)(tcp + 1), end, &bad); o != NULL;
         o = fp_tcp_opt(o + o[1], end, &bad)) {
        if (o[0] == 8 && o[1] == 10) {
            s->tsval = rte_be_to_cpu_32(*(const unaligned_uint32_t *)(o + 2));
            s->tsecr = rte_be_to_cpu_32(*(const unaligned_uint32_t *)(o + 6));
            s->has_ts = true;
        } else if (o[0] == 5 && o[1] >= 10 && (o[1] - 2) % 8 == 0) {
            /* SACK blocks: keep the lowest left edge above the ACK. */
            for (const uint8_t *b = o + 2; b < o + o[1]; b += 8) {
                uint32_t left = rte_be_to_cpu_32(*(const unaligned_uint32_t *)b);
                uint32_t right = rte_be_to_cpu_32(*(const unaligned_uint32_t *)(b + 4));
                if (seq_diff(right, left) <= 0 || seq_diff(left, s->ack) <= 0)
                    continue;
                if (!s->sack.present || seq_diff(left, s->sack.lowest) < 0)
                    s->sack.lowest = left;
                s->sack.present = true;
            }
        }
    }
    return !bad;
}

/* Returns bytes of TX data newly acknowledged. */
static uint32_t process_ack(struct fp_core *c, struct tas_flow *f, const struct seg *s)
{
    struct tas_fp *fp = c->fp;
    bool fin_out = f->flags & TAS_FLF_FIN_EVER;
    int32_t acked = seq_diff(s->ack, f->tx_una);
    uint32_t new_wnd = (uint32_t)s->win << f->snd_wscale;
    uint32_t data_acked = 0;
    /* After a go-back, the peer may acknowledge bytes sent before it that
     * are queued to go again (they were only reordered): valid up to the
     * highest byte ever sent. */
    uint32_t sent_max = RTE_MAX(f->tx_sent, f->tx_sent_max);
    if (acked > 0 && (uint32_t)acked <= sent_max + (fin_out ? 1u : 0u)) {
        data_acked = RTE_MIN((uint32_t)acked, sent_max);
        if (fin_out && (uint32_t)acked == sent_max + 1)
            f->flags |= TAS_FLF_TXFIN_ACKED | TAS_FLF_TXFIN_SENT;
        f->tx_una += (uint32_t)acked;
        f->tx_head = (f->tx_head + data_acked) % f->tx_size;
        if (data_acked > f->tx_sent) {
            f->tx_avail -= data_acked - f->tx_sent;
            f->tx_sent = 0;
        } else {
            f->tx_sent -= data_acked;
        }
        f->tx_sent_max = sent_max - data_acked;
        f->cnt_ackb += data_acked;
        if (s->flags & RTE_TCP_ECE_FLAG)
            f->cnt_ecnb += data_acked;
        f->dupack_cnt = 0;
        fp_sack_newack(c, f, &s->sack);
        uint32_t now_us = fp_now_us(fp);
        f->tx_progress_us = now_us;
        if (f->rto_ts_us != 0) {
            /* The first ACK after a timeout's go-back: if it echoes a TSval
             * from before the go-back, the originals arrived after all and
             * the timeout was spurious (the peer or its path was slow). */
            if (s->has_ts && s->tsecr != 0 && seq_diff(s->tsecr, f->rto_ts_us) < 0) {
                f->cnt_spurious_rto += f->rto_pending;
                kb_stats_add(fp->ctr.spurious_rtos, f->rto_pending);
            }
            f->rto_pending = 0;
            f->rto_ts_us = 0;
        }
        if (s->has_ts && s->tsecr != 0) {
            uint32_t rtt = now_us - s->tsecr;
            f->rtt_est_us = f->rtt_est_us ? (7 * f->rtt_est_us + rtt) / 8 : rtt;
        }
    } else if (acked == 0 && s->len == 0 && f->tx_sent > 0 && new_wnd == f->snd_wnd &&
               !(s->flags & RTE_TCP_FIN_FLAG)) {
        kb_stats_add(fp->ctr.dupacks, 1);
        if (f->flags & TAS_FLF_SACK_RECOV) {
            fp_sack_dupack(c, f, &s->sack);     /* may show a further hole */
        } else if (++f->dupack_cnt == 3) {
            /* Fast retransmit: resend the holes the peer's SACK blocks
             * show, or else go back to the last ACK as if the unacked
             * segments were never sent; tell congestion control. */
            if (!fp_sack_dupack(c, f, &s->sack))
                fp_flow_go_back(f);
            f->cnt_frexmits++;
            f->dupack_cnt = 0;
            kb_stats_add(fp->ctr.fast_rexmits, 1);
        }
    }
    if (acked >= 0)
        f->snd_wnd = new_wnd;
    return data_acked;
}

/* Fold the out-of-order interval in once the gap before it is filled. */
static uint32_t merge_ooo(struct tas_flow *f)
{
    if (f->rx_ooo_len == 0 || seq_diff(f->rx_ooo_start, f->rx_next_seq) > 0)
        return 0;
    int32_t extra = seq_diff(f->rx_ooo_start + f->rx_ooo_len, f->rx_next_seq);
    f->rx_ooo_len = 0;
    if (extra <= 0)
        return 0;
    f->rx_head = (f->rx_head + (uint32_t)extra) % f->rx_size;
    f->rx_avail -= (uint32_t)extra;
    f->rx_next_seq += (uint32_t)extra;
    return (uint32_t)extra;
}

/* Keep a segment beyond the next expected byte if it fits the interval. */
static void place_ooo(struct tas_fp *fp, struct tas_flow *f, const struct seg *s, uint32_t off)
{
    if (off + s->len > f->rx_avail) {
        kb_stats_add(fp->ctr.ooo_dropped, 1);
        return;
    }
    uint32_t start = s->seq, end = s->seq + s->len;
    if (f->rx_ooo_len > 0) {
        uint32_t ostart = f->rx_ooo_start, oend = ostart + f->rx_ooo_len;
        if (seq_diff(end, ostart) < 0 || seq_diff(start, oend) > 0) {
            kb_stats_add(fp->ctr.ooo_dropped, 1); /* a second interval: not kept */
            return;
        }
        if (seq_diff(ostart, start) < 0)
            start = ostart;
        if (seq_diff(oend, end) > 0)
            end = oend;
    }
    ring_write(f->rx_base, f->rx_size, (f->rx_head + off) % f->rx_size, s->payload, s->len);
    f->rx_ooo_start = start;
    f->rx_ooo_len = end - start;
    kb_stats_add(fp->ctr.ooo_accepted, 1);
}

/* Returns new in-order bytes; sets *fin when the peer's FIN is consumed. */
static uint32_t process_data(struct tas_fp *fp, struct tas_flow *f, struct seg *s, bool *fin)
{
    bool has_fin = s->flags & RTE_TCP_FIN_FLAG;
    int32_t off = seq_diff(s->seq, f->rx_next_seq);
    if (f->flags & TAS_FLF_RXFIN)
        return 0;
    if (off < 0) {                      /* starts with bytes we already have */
        if ((uint32_t)-off >= s->len && !(has_fin && (uint32_t)-off == s->len)) {
            kb_stats_add(fp->ctr.rx_dup, 1);
            return 0;
        }
        s->payload += -off;
        s->len -= (uint32_t)-off;
        s->seq = f->rx_next_seq;
        off = 0;
    }
    if (off > 0) {
        place_ooo(fp, f, s, (uint32_t)off);
        return 0;
    }
    uint32_t n = RTE_MIN(s->len, f->rx_avail);
    if (n < s->len)
        kb_stats_add(fp->ctr.rx_buf_full, 1);
    if (n > 0) {
        ring_write(f->rx_base, f->rx_size, f->rx_head, s->payload, n);
        f->rx_head = (f->rx_head + n) % f->rx_size;
        f->rx_avail -= n;
        f->rx_next_seq += n;
    }
    n += merge_ooo(f);
    if (has_fin && seq_diff(s->seq + s->len, f->rx_next_seq) == 0) {
        f->rx_next_seq++;
        f->flags |= TAS_FLF_RXFIN;
        *fin = true;
    }
    return n;
}

/* ACK coalescing: in-order data is ACKed once ack_every() bytes of it are
 * unacknowledged, or once the oldest ACK owed has waited fastpath.delack_us
 * (looked at once per loop round; all go before the core sleeps); at once
 * when something the sender must hear of soon happened (out of order,
 * duplicate or refused data, a hole still open, PSH, FIN, a CE mark).  Every segment we send carries the ACK (build_segment clears
 * what is owed).  Linux ACKs every second segment, but its segments are
 * GRO aggregates of up to 64 KiB; ACKing every second 1,448-byte frame
 * made the sender's kernel process an ACK per 2.9 KB (on a local peer, on
 * our CPUs).  So: a quarter of the receive buffer, at most 64 KiB, at
 * least two full segments. */
static uint32_t ack_every(const struct tas_fp *fp, const struct tas_flow *f)
{
    uint32_t two = 2u * fp_rx_mss(fp, f);
    return RTE_MAX(two, RTE_MIN(f->rx_size / 4u, 65536u));
}

static void ack_data(struct fp_core *c, struct tas_flow *f, const struct seg *s,
                     uint32_t len, uint32_t taken, bool fin)
{
    f->rx_unacked_bytes += taken;
    bool now = taken < len || len == 0 || fin || f->rx_ooo_len > 0 || s->ce ||
               (s->flags & (RTE_TCP_PSH_FLAG | RTE_TCP_FIN_FLAG)) ||
               f->rx_unacked_bytes >= ack_every(c->fp, f);
    if (now) {
        fp_tcp_send_ack(c, f);
        return;
    }
    if (!(f->flags & TAS_FLF_ACK_DUE) && c->nack_due < FP_RX_MAX) {
        if (c->nack_due == 0)
            c->ack_due_since = rte_get_tsc_cycles();
        f->flags |= TAS_FLF_ACK_DUE;
        c->ack_due[c->nack_due++] = f;
    } else if (!(f->flags & TAS_FLF_ACK_DUE)) {
        fp_tcp_send_ack(c, f);          /* no room to remember it */
    }
}

void fp_tcp_rx_burst_end(struct fp_core *c)
{
    if (c->nnotify_due > 0) {
        enum fp_stage prev = fp_stage_enter(c, FP_ST_NOTIFY);
        fp_notify_flush(c);
        fp_stage_leave(c, prev);
    }
    /* owed ACKs: the loop's fp_tcp_acks_flush, once per round */
}

void fp_tcp_acks_flush(struct fp_core *c, bool force)
{
    if (c->nack_due == 0)
        return;
    if (!force && rte_get_tsc_cycles() - c->ack_due_since < c->fp->delack_cycles)
        return;
    for (unsigned i = 0; i < c->nack_due; i++) {
        struct tas_flow *f = c->ack_due[i];
        fp_lock(f);
        /* still owed (no segment of ours carried it meanwhile) and live */
        if ((f->flags & (TAS_FLF_ACK_DUE | TAS_FLF_ACTIVE)) == (TAS_FLF_ACK_DUE | TAS_FLF_ACTIVE) &&
            !(f->flags & TAS_FLF_RESET))
            fp_tcp_send_ack(c, f);
        f->flags &= ~TAS_FLF_ACK_DUE;
        fp_unlock(f);
    }
    c->nack_due = 0;
}

uint32_t fp_tcp_rx(struct fp_core *c, struct tas_flow *f, struct rte_mbuf *m)
{
    struct tas_fp *fp = c->fp;
    struct seg s;
    if (!parse(m, &s)) {
        kb_stats_add(fp->ctr.drop_malformed, 1);
        return FP_RX_CONSUMED;
    }
    if (!(f->flags & TAS_FLF_ACTIVE) || (f->flags & TAS_FLF_RESET) ||
        f->peer_ip != s.peer_ip || f->local_port != s.local_port || f->peer_port != s.peer_port) {
        /* Removed meanwhile (its slot maybe reused by another connection
         * since it was looked up), or reset: the slow path answers as for
         * no connection (it was not processed here). */
        return TAS_EXC_TCP_CTRL;
    }
    if (f->flags & TAS_FLF_SYNSENT)
        return fp_tcp_synsent(c, f, m);     /* our connect's SYN-ACK (fp_tcp_connect.c) */
    bool established = false;
    if (f->flags & TAS_FLF_SYNRCVD) {
        if ((s.flags & (RTE_TCP_SYN_FLAG | RTE_TCP_RST_FLAG)) ||
            !(s.flags & RTE_TCP_ACK_FLAG) || s.ack != f->tx_una) {
            return TAS_EXC_TCP_CTRL;
        }
        /* The handshake's final ACK: from here on every segment of the flow
         * is taken here, in order; the slow path hears of it afterwards. */
        f->flags &= ~TAS_FLF_SYNRCVD;
        if (s.has_ts)
            f->ts_recent = s.tsval;
        established = true;
    }
    if (s.flags & (RTE_TCP_SYN_FLAG | RTE_TCP_RST_FLAG)) {
        /* RFC 5961: only an exact RST goes on to the slow path (which
         * resets); a SYN on a synchronized flow earns a challenge ACK. */
        bool reset = false;
        uint32_t done = TAS_FLF_RXFIN | TAS_FLF_TXFIN_ACKED;
        if ((s.flags & RTE_TCP_SYN_FLAG) && !(s.flags & (RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG)) &&
            (f->flags & done) == done) {
            /* Both sides closed: the slow path is about to move the flow to
             * TIME_WAIT, where a new SYN may reuse the port pair. */
            return TAS_EXC_TCP_CTRL;
        }
        if (s.flags & RTE_TCP_RST_FLAG) {
            reset = fp_tcp_rst_exact(c, f, s.seq);
            if (reset)      /* what follows must not be taken or ACKed */
                f->flags |= TAS_FLF_RESET;
        } else
            fp_tcp_challenge_ack(c, f);
        if (!reset)
            return FP_RX_CONSUMED;
        if (f->flags & TAS_FLF_QUIET) {
            /* The slow path polls a quiet flow's flags: it need not see
             * the frame (passing it up made the slow path take every
             * connection the sweep still held, one RST at a time).  The
             * app hears of it here; the sweep closes the flow in C once
             * the app has closed it. */
            if (!(f->flags & TAS_FLF_APP_CLOSED))
                fp_notify_later(c, f, 0, f->rx_head, 0, TAS_ARX_FL_RESET);
            return FP_RX_CONSUMED;
        }
        return TAS_EXC_TCP_FLOW;
    }
    uint32_t tx_bump = (s.flags & RTE_TCP_ACK_FLAG) ? process_ack(c, f, &s) : 0;
    if ((f->flags & TAS_FLF_APP_CLOSED) && s.len > 0 &&
        seq_diff(s.seq + s.len, f->rx_next_seq) > 0) {
        /* New data for a connection the app closed: nobody will read it.
         * Not taken, not ACKed; the slow path resets the connection, as
         * Linux does (RFC 1122 4.2.2.13). */
        f->flags |= TAS_FLF_RX_DISCARD;
        return TAS_EXC_TCP_FLOW;
    }
    bool fin = false;
    uint32_t rx_pos = f->rx_head, rx_bump = 0;
    if (s.len > 0 || (s.flags & RTE_TCP_FIN_FLAG)) {
        if (s.has_ts && seq_diff(s.seq, f->rx_next_seq) <= 0)
            f->ts_recent = s.tsval;
        if (s.ce)
            f->flags |= TAS_FLF_CE_SEEN;
        uint32_t len = s.len;
        rx_bump = process_data(fp, f, &s, &fin);
        c->hot.tcp_rx_segs++;
        c->hot.tcp_rx_bytes += rx_bump;
        ack_data(c, f, &s, len, rx_bump, fin);
    } else if (seq_diff(s.seq, f->rx_next_seq) < 0) {
        /* An empty segment below the window: a zero-window probe or a
         * keepalive.  Answer with our ACK and window (RFC 9293 3.10.7.4):
         * if our window update was lost, this is how the peer learns that
         * the window opened. */
        kb_stats_add(fp->ctr.probes_answered, 1);
        fp_tcp_send_ack(c, f);
    }
    if (rx_bump || tx_bump || fin || established)
        fp_notify_later(c, f, rx_bump, rx_pos, tx_bump,
                        (fin ? TAS_ARX_FL_RXFIN : 0) | (established ? TAS_ARX_FL_ESTABLISHED : 0));
    if ((f->tx_avail > 0 && f->snd_wnd > f->tx_sent) ||
        ((f->flags & TAS_FLF_TXFIN) && !(f->flags & TAS_FLF_TXFIN_SENT)))
        fp_flow_queue_tx(fp, f);
    if ((fin || established) && !(f->flags & TAS_FLF_QUIET))
        return TAS_EXC_TCP_FLOW;      /* the slow path tracks open and close */
    return FP_RX_CONSUMED;
}
