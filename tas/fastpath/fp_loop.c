/*
 * One fast-path core: poll its RX queue, hand exceptions to the slow path,
 * transmit what the slow path queued (core 0), and block on an eventfd (and
 * the RX interrupt, where the device has one) after idle_block_us without
 * work, so that busy pollers do not starve a 2-core machine.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>

#include "fp_internal.h"

void fp_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    struct tas_fp *fp = c->fp;
    n = fp_fault_tx(c, pkts, n);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < n; i++)
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    unsigned sent = 0;
    /* A few retries absorb a momentarily full TX ring. */
    for (int tries = 0; sent < n && tries < 8; tries++)
        sent += rte_eth_tx_burst(fp->port, c->idx, pkts + sent, (uint16_t)(n - sent));
    if (sent < n) {
        for (unsigned i = sent; i < n; i++)
            bytes -= rte_pktmbuf_pkt_len(pkts[i]);
        kb_stats_add(fp->ctr.tx_drops, n - sent);
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
    kb_stats_add(fp->ctr.tx_pkts, sent);
    kb_stats_add(fp->ctr.tx_bytes, bytes);
}

/* Classify and process a burst of received frames. */
static void process_rx(struct fp_core *c, struct rte_mbuf **pkts, uint16_t n)
{
    struct tas_fp *fp = c->fp;
    struct rte_mbuf *exc[FP_RX_MAX];
    uint32_t reasons[FP_RX_MAX];
    unsigned nexc = 0;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; i++) {
        struct tas_flow *flow = NULL;
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
        switch (fp_classify(fp, pkts[i], &reasons[nexc], &flow)) {
        case FP_DROP:
            rte_pktmbuf_free(pkts[i]);
            break;
        case FP_FLOW:
            if (!fp_tcp_rx(c, flow, pkts[i]))
                break;
            /* the slow path sees it too */
            __attribute__((fallthrough));
        case FP_EXCEPTION:
            exc[nexc++] = pkts[i];
            break;
        }
    }
    kb_stats_add(fp->ctr.rx_pkts, n);
    kb_stats_add(fp->ctr.rx_bytes, bytes);
    if (nexc > 0)
        fp_exceptions_push(fp, exc, reasons, nexc);
}

static unsigned poll_rx(struct fp_core *c)
{
    struct rte_mbuf *pkts[FP_RX_MAX];
    uint16_t n = rte_eth_rx_burst(c->fp->port, c->idx, pkts, FP_BURST);
    unsigned k = fp_fault_rx(c, pkts, n, FP_RX_MAX);
    if (k > 0)
        process_rx(c, pkts, (uint16_t)k);
    if (c->idx == 0) {
        struct rte_mbuf *inj[FP_BURST];
        unsigned j = rte_ring_sc_dequeue_burst(c->fp->inject_ring, (void **)inj, FP_BURST, NULL);
        if (j > 0)
            process_rx(c, inj, (uint16_t)j);
        n += j;
    }
    return n;
}

static unsigned poll_sp_tx(struct fp_core *c)
{
    if (c->idx != 0)
        return 0;
    struct rte_mbuf *pkts[FP_BURST];
    unsigned n = fp_sp_tx_drain(c->fp, pkts, FP_BURST);
    if (n > 0)
        fp_tx(c, pkts, n);
    return n;
}

void fp_tx_one(struct fp_core *c, struct rte_mbuf *m)
{
    c->txbuf[c->ntx++] = m;
    if (c->ntx == FP_BURST)
        fp_tx_flush(c);
}

void fp_tx_flush(struct fp_core *c)
{
    if (c->ntx > 0) {
        fp_tx(c, c->txbuf, c->ntx);
        c->ntx = 0;
    }
}

static bool app_queues_pending(struct fp_core *c)
{
    struct tas_fp *fp = c->fp;
    uint16_t hi = __atomic_load_n(&fp->ctx_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = c->idx; i < hi; i += fp->conf.ncores)
        if (__atomic_load_n(&fp->ctxs[i].active, __ATOMIC_ACQUIRE) &&
            !rte_ring_empty(fp->ctxs[i].txq))
            return true;
    return false;
}

static bool has_pending(struct fp_core *c)
{
    return (c->idx == 0 && (!rte_ring_empty(c->fp->sp_tx_ring) ||
                            !rte_ring_empty(c->fp->inject_ring))) ||
           !rte_ring_empty(c->fp->tx_work[c->idx]) || app_queues_pending(c) ||
           rte_eth_rx_queue_count(c->fp->port, c->idx) > 0;
}

static void block_until_work(struct fp_core *c)
{
    struct tas_fp *fp = c->fp;
    kb_stats_add(fp->ctr.sleeps, 1);
    if (c->rx_intr_fd >= 0)
        rte_eth_dev_rx_intr_enable(fp->port, c->idx);
    __atomic_store_n(c->sleeping, 1, __ATOMIC_SEQ_CST);
    /* Close the race with a waker that checked `sleeping` before we set it. */
    if (!fp->stop && !has_pending(c)) {
        struct epoll_event ev[2];
        /* Without RX interrupts, wake every poll_sleep_us to poll the device;
         * with them, the timeout only bounds how long a lost wake-up lasts. */
        uint32_t us = c->rx_intr_fd >= 0 ? 1000000 : fp->conf.poll_sleep_us;
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
        int n = epoll_pwait2(c->epfd, ev, 2, &ts, NULL);
        for (int i = 0; i < n; i++) {
            /* Drain only our eventfd: the RX interrupt fd may be the device's
             * own queue (net_tap), and reading it would eat a packet. */
            if (ev[i].data.fd != c->wake_fd)
                continue;
            uint64_t v;
            ssize_t r = read(c->wake_fd, &v, sizeof(v));
            (void)r;
        }
    }
    __atomic_store_n(c->sleeping, 0, __ATOMIC_SEQ_CST);
    if (c->rx_intr_fd >= 0)
        rte_eth_dev_rx_intr_disable(fp->port, c->idx);
    kb_stats_add(fp->ctr.wakeups, 1);
}

void tas_fp_quiesce(struct tas_fp *fp)
{
    uint64_t seen[TAS_FP_MAX_CORES];
    for (uint16_t i = 0; i < fp->conf.ncores; i++)
        seen[i] = __atomic_load_n(&fp->cores[i].epoch, __ATOMIC_ACQUIRE);
    for (uint16_t i = 0; i < fp->conf.ncores; i++) {
        struct fp_core *c = &fp->cores[i];
        /* A sleeping core touches nothing; a running one must finish the
         * iteration it may be in. */
        while (!fp->stop && !__atomic_load_n(c->sleeping, __ATOMIC_SEQ_CST) &&
               __atomic_load_n(&c->epoch, __ATOMIC_ACQUIRE) == seen[i])
            rte_pause();
    }
}

int fp_core_loop(void *arg)
{
    struct fp_core *c = arg;
    struct tas_fp *fp = c->fp;
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t idle_limit = hz / 1000000 * fp->conf.idle_block_us;
    uint64_t last_work = rte_get_tsc_cycles();
    uint64_t prev = last_work;

    while (!fp->stop) {
        unsigned work = poll_rx(c) + poll_sp_tx(c) + fp_apps_poll(c) + fp_tcp_tx_work(c);
        fp_tx_flush(c);
        uint64_t now = rte_get_tsc_cycles();
        if (work > 0) {
            c->busy_cycles += now - prev;
            last_work = now;
        } else if (now - last_work > idle_limit) {
            block_until_work(c);
            now = rte_get_tsc_cycles();
            last_work = now;
        }
        c->total_cycles += now - prev;
        prev = now;
        __atomic_fetch_add(&c->epoch, 1, __ATOMIC_RELEASE);
    }
    return 0;
}
