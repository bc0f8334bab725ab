/*
 * Transmit: segment the flow's TX buffer into MSS-sized packets within the
 * peer's window and the congestion-control rate, and build ACKs.  There is
 * no send queue: sent data stays in the TX buffer until acknowledged, so a
 * retransmission simply re-reads it.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include "fp_cksum.h"
#include "fp_internal.h"

#define TX_SEGS_PER_VISIT 16
/* Rate limiting is a token bucket this many segments deep, and at least
 * RATE_BURST_MIN bytes: a flow that sent less than its rate (an RPC waiting
 * for its reply) may send that much at once.  Pacing every message to the
 * rate instead would add size/rate to each RPC, and the rate of an
 * app-limited flow is held near what it sends (the slow path's 1.2x
 * clamp), so that delay would be several RTTs.  16 segments of 1,460 bytes
 * paced the rest of each 64 KiB response: 64 connections echoing 64 KiB
 * over memif went from 30,000 to 34,000-40,000 a second with 64 KiB. */
#define RATE_BURST_SEGS 16
#define RATE_BURST_MIN 65536
#define TCP_OPT_TS_LEN 12  /* NOP NOP kind=8 len=10 TSval TSecr */
#define TCP_OPT_SACK_LEN 12 /* NOP NOP kind=5 len=10 left right: one block */

uint32_t tas_fp_ts_now(struct tas_fp *fp)
{
    return fp_now_us(fp);
}

/* glibc's memcpy (AVX where the CPU has it): DPDK's inline rte_memcpy is
 * built for -march=corei7 (SSE) here */
static void ring_read(const uint8_t *base, uint32_t size, uint32_t pos, uint8_t *dst, uint32_t len)
{
    uint32_t first = RTE_MIN(len, size - pos);
    memcpy(dst, base + pos, first);
    if (len > first)
        memcpy(dst + first, base, len - first);
}

static uint16_t adv_window(const struct tas_flow *f)
{
    uint32_t w = f->rx_avail >> f->rcv_wscale;
    return (uint16_t)RTE_MIN(w, 0xffffu);
}

/* The sum of the payload as it sits in the TX ring (where it was not just
 * written), as numbers of network-order 16-bit words.  A second piece
 * after an odd-length first one starts at an odd offset: its sum swaps. */
static uint32_t payload_sum(const uint8_t *base, uint32_t size, uint32_t pos, uint32_t len)
{
    uint32_t first = RTE_MIN(len, size - pos);
    uint16_t a = fp_raw_cksum(base + pos, first);
    uint16_t b = len > first ? fp_raw_cksum(base, len - first) : 0;
    if (first & 1)
        b = rte_bswap16(b);
    return rte_bswap16(fp_fold_add(a, b));    /* memory order -> numeric */
}

/* Build one segment: headers, options, payload from the TX buffer.  The
 * checksums are summed from the values written, not read back from the
 * headers just stored: those loads stalled on the stores (partial
 * store-to-load forwarding behind the mbuf's cold lines), the largest cost
 * of an ACK. */
static struct rte_mbuf *build_segment(struct tas_fp *fp, struct tas_flow *f, uint32_t seq,
                                      uint8_t tcp_flags, uint32_t pos, uint32_t len,
                                      uint64_t tsc)
{
    struct rte_mbuf *m = rte_pktmbuf_alloc(fp->pool);
    if (m == NULL)
        return NULL;
    bool ts = f->flags & TAS_FLF_TS;
    /* The out-of-order interval we keep is the one SACK block we report;
     * it rides on segments with room for it under the MSS (pure ACKs). */
    bool sack = (f->flags & TAS_FLF_SACK) && f->rx_ooo_len > 0 &&
                len + TCP_OPT_SACK_LEN <= f->mss;
    uint32_t thl = sizeof(struct rte_tcp_hdr) + (ts ? TCP_OPT_TS_LEN : 0) +
                   (sack ? TCP_OPT_SACK_LEN : 0);
    /* ECT(0) on data segments of an ECN flow */
    uint8_t tos = ((f->flags & TAS_FLF_ECN) && len > 0) ? 0x02 : 0;
    struct rte_ipv4_hdr *ip = fp_tx_ipv4(fp, m, f, thl + len, tos);
    if (ip == NULL)
        return NULL;
    uint32_t addrs = fp_halves(f->local_ip) + fp_halves(f->peer_ip);

    if (f->flags & TAS_FLF_CE_SEEN) {
        tcp_flags |= RTE_TCP_ECE_FLAG;
        f->flags &= ~TAS_FLF_CE_SEEN;
    }
    uint16_t win = adv_window(f);
    uint32_t ack = f->rx_next_seq;
    f->flags &= ~TAS_FLF_ACK_DUE;       /* this segment carries the ACK owed */
    f->rx_unacked_bytes = 0;
    /* TCP: pseudo header (addresses, protocol, length), then the header */
    uint64_t sum = addrs + IPPROTO_TCP + thl + len + f->local_port + f->peer_port +
                   fp_halves(seq) + fp_halves(ack) + ((thl / 4) << 12 | tcp_flags) + win;
    struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + 1);
    tcp->src_port = rte_cpu_to_be_16(f->local_port);
    tcp->dst_port = rte_cpu_to_be_16(f->peer_port);
    tcp->sent_seq = rte_cpu_to_be_32(seq);
    tcp->recv_ack = rte_cpu_to_be_32(ack);
    tcp->data_off = (uint8_t)((thl / 4) << 4);
    tcp->tcp_flags = tcp_flags;
    tcp->rx_win = rte_cpu_to_be_16(win);
    tcp->tcp_urp = 0;
    uint8_t *opt = (uint8_t *)(tcp + 1);
    if (ts) {
        uint32_t tsval = tsc ? (uint32_t)(tsc / fp->tsc_per_us) : fp_now_us(fp);
        uint32_t words[3] = {rte_cpu_to_be_32(0x0101080a), rte_cpu_to_be_32(tsval),
                             rte_cpu_to_be_32(f->ts_recent)};
        memcpy(opt, words, sizeof(words));     /* NOP NOP kind=8 len=10 TSval TSecr */
        sum += 0x0101 + 0x080a + fp_halves(tsval) + fp_halves(f->ts_recent);
        opt += TCP_OPT_TS_LEN;
    }
    if (sack) {
        uint32_t left = f->rx_ooo_start, right = f->rx_ooo_start + f->rx_ooo_len;
        uint32_t words[3] = {rte_cpu_to_be_32(0x0101050a), rte_cpu_to_be_32(left),
                             rte_cpu_to_be_32(right)};
        memcpy(opt, words, sizeof(words));     /* NOP NOP kind=5 len=10 left right */
        sum += 0x0101 + 0x050a + fp_halves(left) + fp_halves(right);
        kb_stats_add(fp->ctr.sack_blocks_sent, 1);
    }
    if (len > 0) {
        ring_read(f->tx_base, f->tx_size, pos, (uint8_t *)tcp + thl, len);
        sum += payload_sum(f->tx_base, f->tx_size, pos, len);
    }
    tcp->cksum = rte_cpu_to_be_16((uint16_t)~fp_fold(sum));
    return m;
}

/* tsc: the TSC now (0: read it) */
static void send_control(struct fp_core *c, struct tas_flow *f, uint32_t seq, uint8_t flags,
                         uint64_t tsc)
{
    struct rte_mbuf *m = build_segment(c->fp, f, seq, flags, 0, 0, tsc);
    if (m != NULL)
        fp_tx_one(c, m);
}

void fp_tcp_send_ack(struct fp_core *c, struct tas_flow *f)
{
    enum fp_stage prev = fp_stage_enter(c, FP_ST_ACK);
    uint32_t snd_nxt = f->tx_una + f->tx_sent + ((f->flags & TAS_FLF_TXFIN_SENT) ? 1 : 0);
    send_control(c, f, snd_nxt, RTE_TCP_ACK_FLAG, c->stage_t0);  /* read by the stage switch */
    c->hot.acks_sent++;
    fp_stage_leave(c, prev);
}

uint32_t fp_tcp_resend(struct fp_core *c, struct tas_flow *f, uint32_t seq, uint32_t end)
{
    uint32_t segs = 0, bytes = 0;
    while (seq_diff(end, seq) > 0) {
        uint32_t len = RTE_MIN((uint32_t)seq_diff(end, seq), (uint32_t)f->mss);
        uint32_t pos = (f->tx_head + (seq - f->tx_una)) % f->tx_size;
        struct rte_mbuf *m = build_segment(c->fp, f, seq, RTE_TCP_ACK_FLAG, pos, len, 0);
        if (m == NULL)
            break;
        fp_tx_one(c, m);
        seq += len;
        bytes += len;
        segs++;
    }
    f->cnt_txb += bytes;
    c->hot.tcp_tx_segs += segs;
    c->hot.tcp_tx_bytes += bytes;
    return segs;
}

/* A zero-window probe: an old sequence number makes the peer answer with
 * an ACK carrying its current window. */
void fp_tcp_send_probe(struct fp_core *c, struct tas_flow *f)
{
    send_control(c, f, f->tx_una - 1, RTE_TCP_ACK_FLAG, 0);
}

/* Have the flow's queue core send a control segment (flag: PROBE or
 * ACKNOW) or its FIN (TXFIN); then(f), if given, under the flow's lock too. */
static void flow_request(struct tas_fp *fp, uint32_t id, uint32_t flag,
                         void (*then)(struct tas_flow *f))
{
    struct tas_flow *f = tas_fp_flow(fp, id);
    if (f == NULL)
        return;
    fp_lock(f);
    if (f->flags & TAS_FLF_ACTIVE) {
        f->flags |= flag;
        if (then != NULL)
            then(f);
        fp_flow_queue_tx(fp, f);
    }
    fp_unlock(f);
}

void tas_fp_flow_probe(struct tas_fp *fp, uint32_t id)
{
    flow_request(fp, id, TAS_FLF_PROBE, NULL);
}

void tas_fp_flow_ack(struct tas_fp *fp, uint32_t id)
{
    flow_request(fp, id, TAS_FLF_ACKNOW, NULL);
}

void tas_fp_flow_close(struct tas_fp *fp, uint32_t id)
{
    /* as fp_apps.c takes the app's TAS_ATX_FL_TXFIN | TAS_ATX_FL_CLOSED */
    flow_request(fp, id, TAS_FLF_TXFIN, tas_fp_flow_mark_closed);
}

/* TSC cycles that `bytes` take at `kbps`. */
static uint64_t rate_cycles(struct tas_fp *fp, uint32_t kbps, uint64_t bytes)
{
    return bytes * 8 * fp->tsc_hz / ((uint64_t)kbps * 1000);
}

/* Send what window and rate allow; true if the flow has more to send now. */
static bool flow_transmit(struct fp_core *c, struct tas_flow *f, uint64_t now)
{
    struct tas_fp *fp = c->fp;
    if (f->flags & TAS_FLF_RX_DISCARD)
        return false;       /* a RST (the slow path's) is all that goes out now */
    if (f->flags & TAS_FLF_PROBE) {
        f->flags &= ~TAS_FLF_PROBE;
        fp_tcp_send_probe(c, f);
    }
    if (f->flags & TAS_FLF_ACKNOW) {
        f->flags &= ~TAS_FLF_ACKNOW;
        fp_tcp_send_ack(c, f);
    }
    uint32_t rate = __atomic_load_n(&f->tx_rate_kbps, __ATOMIC_RELAXED);
    if (rate != 0 && now < f->tx_next_tsc)
        return true;
    /* Nothing outstanding: what goes out now starts the retransmission clock. */
    bool idle = f->tx_sent == 0 && !((f->flags & TAS_FLF_TXFIN_SENT) &&
                                     !(f->flags & TAS_FLF_TXFIN_ACKED));
    uint32_t wnd = f->snd_wnd > f->tx_sent ? f->snd_wnd - f->tx_sent : 0;
    uint32_t todo = RTE_MIN(f->tx_avail, wnd);
    uint32_t sent_bytes = 0;
    for (int segs = 0; todo > 0 && segs < TX_SEGS_PER_VISIT; segs++) {
        uint32_t len = RTE_MIN(todo, (uint32_t)f->mss);
        uint32_t pos = (f->tx_head + f->tx_sent) % f->tx_size;
        uint8_t flags = RTE_TCP_ACK_FLAG | (len == todo ? RTE_TCP_PSH_FLAG : 0);
        struct rte_mbuf *m = build_segment(fp, f, f->tx_una + f->tx_sent, flags, pos, len, 0);
        if (m == NULL)
            break;
        fp_tx_one(c, m);
        f->tx_sent += len;
        f->tx_avail -= len;
        f->tx_sent_max = RTE_MAX(f->tx_sent_max, f->tx_sent);
        todo -= len;
        sent_bytes += len;
    }
    if (sent_bytes > 0) {
        if (idle)
            f->tx_progress_us = fp_now_us(fp);
        f->cnt_txb += sent_bytes;
        c->hot.tcp_tx_segs += (sent_bytes + f->mss - 1) / f->mss;
        c->hot.tcp_tx_bytes += sent_bytes;
        if (rate != 0) {
            uint64_t credit = rate_cycles(fp, rate, RTE_MAX((uint64_t)RATE_BURST_SEGS * f->mss,
                                                            (uint64_t)RATE_BURST_MIN));
            uint64_t base = f->tx_next_tsc + credit < now ? now - credit : f->tx_next_tsc;
            f->tx_next_tsc = base + rate_cycles(fp, rate, sent_bytes);
        }
    }
    if (f->tx_avail == 0 && (f->flags & TAS_FLF_TXFIN) &&
        !(f->flags & (TAS_FLF_TXFIN_SENT | TAS_FLF_TXFIN_ACKED))) {
        send_control(c, f, f->tx_una + f->tx_sent, RTE_TCP_ACK_FLAG | RTE_TCP_FIN_FLAG, 0);
        f->flags |= TAS_FLF_TXFIN_SENT | TAS_FLF_FIN_EVER;
        if (idle && sent_bytes == 0)
            f->tx_progress_us = fp_now_us(fp);
    }
    return f->tx_avail > 0 && f->snd_wnd > f->tx_sent;
}

unsigned fp_tcp_tx_work(struct fp_core *c, uint16_t q)
{
    struct tas_fp *fp = c->fp;
    struct rte_ring *work = fp->tx_work[q];
    uint32_t ids[FP_BURST];
    if (fp_tx_backlogged(c))
        return 0;           /* the port's ring is full: the flows wait their turn */
    unsigned n = rte_ring_sc_dequeue_burst_elem(work, ids, sizeof(ids[0]), FP_BURST, NULL);
    if (n == 0)
        return 0;
    enum fp_stage prev = fp_stage_enter(c, FP_ST_TX);
    uint64_t now = c->stage_t0;
    for (unsigned i = 0; i < n; i++) {
        struct tas_flow *f = &fp->flows[ids[i]];
        fp_lock(f);
        f->tx_queued = 0;
        /* once the port's ring has filled, the rest wait for the next round */
        if ((f->flags & TAS_FLF_ACTIVE) && !(f->flags & TAS_FLF_RESET) &&
            (fp_tx_backlogged(c) || flow_transmit(c, f, now)))
            fp_flow_queue_tx(fp, f);
        fp_unlock(f);
    }
    fp_stage_leave(c, prev);
    return n;
}
