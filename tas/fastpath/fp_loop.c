/*
 * One fast-path core: poll its RX queue, hand exceptions to the slow path,
 * transmit what the slow path queued (core 0), and block on an eventfd (and
 * the RX interrupt, where the device has one) after idle_block_us without
 * work, so that busy pollers do not starve a 2-core machine.  A device
 * without RX interrupts (net_af_packet) cannot wake us: the core sleeps in
 * steps instead, poll_sleep_us first, doubling up to poll_sleep_max_us while
 * nothing comes, and stays asleep between steps (it polls once per step, it
 * does not spin another idle_block_us after each).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_prefetch.h>

#include "fp_internal.h"

/* Classify and process a burst of received frames. */
static void process_rx(struct fp_core *c, struct rte_mbuf **pkts, uint16_t n)
{
    struct tas_fp *fp = c->fp;
    struct rte_mbuf *exc[FP_RX_MAX], *done[FP_RX_MAX];
    uint32_t reasons[FP_RX_MAX];
    unsigned nexc = 0, ndone = 0;
    uint64_t bytes = 0;
    struct fp_flow_hint hint = {0};   /* this burst's only: flows may go between bursts */
    struct tas_flow *held = NULL;     /* locked for a run of its segments */
    for (uint16_t i = 0; i < n; i++) {
        struct tas_flow *flow = NULL;
        if (i + 1 < n)      /* its headers while this one is processed */
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
        switch (fp_classify(fp, pkts[i], &reasons[nexc], &flow, &hint)) {
        case FP_DROP:
            done[ndone++] = pkts[i];
            break;
        case FP_FLOW:
            if (flow != held) {
                if (held != NULL)
                    fp_unlock(held);
                fp_lock(flow);
                held = flow;
            }
            reasons[nexc] = fp_tcp_rx(c, flow, pkts[i]);
            if (reasons[nexc] == FP_RX_CONSUMED)
                done[ndone++] = pkts[i];
            else
                exc[nexc++] = pkts[i];  /* the slow path sees it too */
            break;
        case FP_EXCEPTION:
            /* A SYN for a listener (no flow yet): answered here if we may.
             * Installing its flow takes the table's writer lock, which the
             * slow path holds while it waits for a flow's lock to remove
             * it: let go of the run's flow first (a burst where a closing
             * connection's segments come before a SYN deadlocked both). */
            if (reasons[nexc] == TAS_EXC_TCP_CTRL && flow == NULL) {
                if (held != NULL) {
                    fp_unlock(held);
                    held = NULL;
                }
                if (fp_tcp_syn(c, pkts[i]))
                    break;
            }
            exc[nexc++] = pkts[i];
            break;
        }
    }
    if (held != NULL)         /* before the burst's ACKs and notifications lock it */
        fp_unlock(held);
    fp_tcp_rx_burst_end(c);
    rte_pktmbuf_free_bulk(done, ndone);
    c->hot.rx_pkts += n;
    c->hot.rx_bytes += bytes;
    if (nexc > 0)
        fp_exceptions_push(fp, exc, reasons, nexc);
}

static unsigned poll_rx(struct fp_core *c, uint16_t q)
{
    struct rte_mbuf *pkts[FP_RX_MAX];
    uint64_t start = rte_rdtsc();
    uint16_t n = rte_eth_rx_burst(c->fp->port, q, pkts, FP_BURST);
    /* An empty poll is polling: its cycles stay with the loop, as empty
     * polls of the app queues and the TX work ring do; rx_drv counts the
     * driver's cost of bursts that brought frames. */
    if (n > 0 || c->held_rx != NULL) {    /* (fault injection's held frame) */
        enum fp_stage prev = fp_stage_enter_at(c, FP_ST_RX_DRV, start);
        unsigned k = fp_fault_rx(c, pkts, n, FP_RX_MAX);
        if (k > 0) {
            fp_stage_enter(c, FP_ST_RX);
            process_rx(c, pkts, (uint16_t)k);
        }
        fp_stage_leave(c, prev);
    }
    /* A short burst emptied the ring: what arrived before `start` has been
     * processed (published after the flow updates, for the slow path). */
    if (n < FP_BURST)
        __atomic_store_n(&c->fp->rx_drained_tsc[q], start, __ATOMIC_RELEASE);
    return n;
}

uint32_t tas_fp_queue_drained_us(struct tas_fp *fp, uint16_t q)
{
    if (q >= fp->conf.ncores)
        return 0;
    uint64_t tsc = __atomic_load_n(&fp->rx_drained_tsc[q], __ATOMIC_ACQUIRE);
    return (uint32_t)(tsc / fp->tsc_per_us);
}

void tas_fp_queue_kick(struct tas_fp *fp, uint16_t q)
{
    if (q < fp->conf.ncores)
        fp_queue_wake(fp, q);
}

/* Core 0's extra duties: frames the slow path sends or hands back. */
static unsigned poll_slowpath(struct fp_core *c)
{
    if (c->idx != 0)
        return 0;
    struct rte_mbuf *pkts[FP_BURST];
    unsigned n = rte_ring_sc_dequeue_burst(c->fp->inject_ring, (void **)pkts, FP_BURST, NULL);
    if (n > 0)
        process_rx(c, pkts, (uint16_t)n);
    unsigned t = fp_sp_tx_drain(c->fp, pkts, FP_BURST);
    if (t > 0)
        fp_tx(c, pkts, t);
    return n + t;
}

/* Serve queue q if no other core does right now (only during a change of
 * the active core count can two cores both think they own it). */
static unsigned serve_queue(struct fp_core *c, uint16_t q)
{
    struct tas_fp *fp = c->fp;
    if (!rte_spinlock_trylock(&fp->qlock[q]))
        return 0;
    unsigned work = poll_rx(c, q) + fp_apps_poll(c, q, fp_tcp_connect) + fp_tcp_tx_work(c, q);
    rte_spinlock_unlock(&fp->qlock[q]);
    return work;
}

static bool queue_pending(struct tas_fp *fp, uint16_t q)
{
    return !rte_ring_empty(fp->tx_work[q]) || fp_apps_pending(fp, q) ||
           rte_eth_rx_queue_count(fp->port, q) > 0;
}

/* Work for core c under the current queue ownership (n active cores). */
static bool has_pending(struct fp_core *c, uint16_t n)
{
    struct tas_fp *fp = c->fp;
    if (c->idx == 0 && (!rte_ring_empty(fp->sp_tx_ring) || !rte_ring_empty(fp->inject_ring)))
        return true;
    for (uint16_t q = c->idx; c->idx < n && q < fp->conf.ncores; q += n)
        if (queue_pending(fp, q))
            return true;
    return false;
}

/* Keep the RX interrupt fds of exactly the queues this core serves in its
 * epoll set (level-triggered and never read, so a queue briefly in two sets
 * during a change of ownership only costs a spurious wake-up). */
static uint32_t sync_intr_fds(struct fp_core *c, uint16_t n)
{
    struct tas_fp *fp = c->fp;
    uint32_t want = 0;
    for (uint16_t q = c->idx; c->idx < n && q < fp->conf.ncores; q += n)
        if (fp->rx_intr_fd[q] >= 0)
            want |= 1u << q;
    for (uint16_t q = 0; q < fp->conf.ncores; q++) {
        uint32_t bit = 1u << q;
        if ((want ^ c->intr_mask) & bit) {
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = fp->rx_intr_fd[q]};
            epoll_ctl(c->epfd, (want & bit) ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
                      fp->rx_intr_fd[q], &ev);
        }
    }
    c->intr_mask = want;
    return want;
}

static void set_intr(struct tas_fp *fp, uint32_t mask, bool on)
{
    for (uint16_t q = 0; q < fp->conf.ncores; q++)
        if (mask & (1u << q)) {
            if (on)
                rte_eth_dev_rx_intr_enable(fp->port, q);
            else
                rte_eth_dev_rx_intr_disable(fp->port, q);
        }
}

/* Datagrams apps sent to wake us (bounded: an app flooding the socket only
 * costs its own wake-ups; MSG_DONTWAIT whatever the apps did to their end). */
static void drain_app_wakeups(struct fp_core *c)
{
    char buf[16];
    for (int i = 0; i < 64; i++)
        if (recv(c->app_wake_rx, buf, sizeof(buf), MSG_DONTWAIT) < 0)
            break;
}

static void flush_one(uint64_t *ctr, uint64_t *local)
{
    if (*local != 0) {
        kb_stats_add(ctr, *local);
        *local = 0;
    }
}

/* Add the per-packet counts and the cycles counted per stage to the stats
 * pages (once a loop round: atomic adds per packet would cost more than
 * what they measure). */
static void flush_counts(struct fp_core *c)
{
    struct tas_fp *fp = c->fp;
    struct fp_hot_counts *h = &c->hot;
    flush_one(fp->ctr.rx_pkts, &h->rx_pkts);
    flush_one(fp->ctr.rx_bytes, &h->rx_bytes);
    flush_one(fp->ctr.tx_pkts, &h->tx_pkts);
    flush_one(fp->ctr.tx_bytes, &h->tx_bytes);
    flush_one(fp->ctr.tcp_rx_segs, &h->tcp_rx_segs);
    flush_one(fp->ctr.tcp_rx_bytes, &h->tcp_rx_bytes);
    flush_one(fp->ctr.tcp_tx_segs, &h->tcp_tx_segs);
    flush_one(fp->ctr.tcp_tx_bytes, &h->tcp_tx_bytes);
    flush_one(fp->ctr.acks_sent, &h->acks_sent);
    for (int s = 0; s < FP_ST_N; s++) {
        if (c->stage_n[s] == 0 && c->stage_cyc[s] == 0)
            continue;
        kb_stats_add(fp->ctr.cyc[s], c->stage_cyc[s]);
        kb_stats_add(fp->ctr.cyc_n[s], c->stage_n[s]);
        c->stage_cyc[s] = c->stage_n[s] = 0;
    }
}

/* Returns false if the core slept its whole polling step without any
 * wake-up: nothing new, so the caller may sleep again right away. */
static bool block_until_work(struct fp_core *c, uint16_t n, uint32_t poll_us)
{
    struct tas_fp *fp = c->fp;
    enum fp_stage prev = fp_stage_enter(c, FP_ST_IDLE);
    bool active = c->idx < n;
    kb_stats_add(fp->ctr.sleeps, 1);
    uint32_t intr = sync_intr_fds(c, n);
    set_intr(fp, intr, true);
    __atomic_store_n(&c->asleep, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(c->sleeping, 1, __ATOMIC_SEQ_CST);
    /* Close the race with a waker that checked `sleeping` before we set it;
     * re-read the active count: ownership may have changed meanwhile. */
    uint16_t now_n = __atomic_load_n(&fp->nactive, __ATOMIC_SEQ_CST);
    bool woken = true;
    if (!fp->stop && now_n == n && !has_pending(c, n)) {
        struct epoll_event ev[TAS_FP_MAX_CORES + 2];
        /* Polling queues without interrupts: wake every poll_sleep_us.  With
         * interrupts (or switched off), the timeout only bounds how long a
         * lost wake-up lasts. */
        bool polled = active && !fp->rx_intr;
        uint32_t us = polled ? poll_us : 1000000;
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
        int k = epoll_pwait2(c->epfd, ev, TAS_FP_MAX_CORES + 2, &ts, NULL);
        woken = k != 0;     /* an event, or a signal (-1): look around first */
        if (k == 0 && polled)
            kb_stats_add(fp->ctr.poll_sleeps, 1);
        for (int i = 0; i < k; i++) {
            /* Drain only our wake-up fds: an RX interrupt fd may be the
             * device's own queue (net_tap), and reading it would eat a packet. */
            if (ev[i].data.fd == c->wake_fd) {
                uint64_t v;
                ssize_t r = read(c->wake_fd, &v, sizeof(v));
                (void)r;
            } else if (ev[i].data.fd == c->app_wake_rx) {
                drain_app_wakeups(c);
            } else {
                continue;
            }
            if (!active)
                fp_wake_active(fp);
        }
    }
    __atomic_store_n(c->sleeping, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->asleep, 0, __ATOMIC_SEQ_CST);
    set_intr(fp, intr, false);
    kb_stats_add(fp->ctr.wakeups, 1);
    fp_stage_leave(c, prev);
    return woken;
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
        while (!fp->stop && !__atomic_load_n(&c->asleep, __ATOMIC_SEQ_CST) &&
               __atomic_load_n(&c->epoch, __ATOMIC_ACQUIRE) == seen[i])
            rte_pause();
    }
}

/* net_tap asks the kernel for a signal per received frame on its queue fds
 * (which are the RX interrupt fds): its RX trigger, a handler any thread
 * may run.  Sent to the process, it interrupts whichever thread the kernel
 * picks, mostly the slow path (Python, on the shared CPU: a third of its
 * time under short connections went there).  Core 0 takes them all. */
static void own_rx_signals(struct fp_core *c)
{
    struct tas_fp *fp = c->fp;
    struct f_owner_ex owner = {.type = F_OWNER_TID, .pid = gettid()};
    for (uint16_t q = 0; q < fp->conf.ncores; q++)
        if (fp->rx_intr_fd[q] >= 0)
            fcntl(fp->rx_intr_fd[q], F_SETOWN_EX, &owner);  /* no signals: harmless */
}

int fp_core_loop(void *arg)
{
    struct fp_core *c = arg;
    struct tas_fp *fp = c->fp;
    if (c->idx == 0)
        own_rx_signals(c);
    /* EAL pins each lcore thread to one CPU (tas/eal.py lcore_map): the
     * apps this core serves may run there too (tas_info.pin_apps) */
    __atomic_store_n(&fp->info->core_cpu[c->idx], sched_getcpu(), __ATOMIC_RELEASE);
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t idle_limit = hz / 1000000 * fp->conf.idle_block_us;
    uint64_t last_work = rte_get_tsc_cycles();
    uint64_t prev = last_work;
    unsigned idle_rounds = 0;
    uint32_t poll_us = fp->conf.poll_sleep_us;    /* the next polling step */
    c->stage = FP_ST_LOOP;
    c->stage_t0 = rte_rdtsc();

    while (!fp->stop) {
        uint16_t n = __atomic_load_n(&fp->nactive, __ATOMIC_SEQ_CST);
        uint64_t held_sent = c->held_sent;
        unsigned work = poll_slowpath(c);
        for (uint16_t q = c->idx; c->idx < n && q < fp->conf.ncores; q += n)
            work += serve_queue(c, q);
        fp_tcp_acks_flush(c, false);
        fp_tx_flush(c);
        work += c->held_sent != held_sent;     /* a full TX ring took some */
        uint64_t now = rte_get_tsc_cycles();
        /* Counts change only with work; the idle rounds' cycles are added
         * after blocking or every 64 rounds (not each poll of an empty ring). */
        bool flush = work > 0 || ++idle_rounds >= 64;
        if (work > 0) {
            c->busy_cycles += now - prev;
            last_work = now;
            poll_us = fp->conf.poll_sleep_us;
        } else if ((c->idx >= n && c->nheld == 0) || now - last_work > idle_limit) {
            /* Switched off (core scaling) or idle long enough: block.  Woken
             * by an event, poll for idle_block_us again (more is likely to
             * follow); a polling step that ended with nothing keeps
             * last_work in the past, so the core sleeps again after this
             * one poll round, a longer step each time up to the cap.
             * Packets waiting for a full TX ring keep a switched-off core
             * up, and any core while the ring takes some; a ring that took
             * none for idle_block_us is tried again after the sleep. */
            fp_tcp_acks_flush(c, true);     /* owed ACKs do not wait out a sleep */
            fp_tx_flush(c);
            if (block_until_work(c, n, poll_us)) {
                last_work = rte_get_tsc_cycles();
                poll_us = fp->conf.poll_sleep_us;
            } else if (poll_us < fp->conf.poll_sleep_max_us) {
                poll_us = RTE_MIN(poll_us * 2, fp->conf.poll_sleep_max_us);
            }
            now = rte_get_tsc_cycles();
            flush = true;
        } else if (fp->conf.yield_idle) {
            /* Polling and finding nothing: let a thread that shares this CPU
             * (an app, the slow path) run now rather than at the end of our
             * time slice.  Alone on the CPU, this returns at once. */
            sched_yield();
            now = rte_get_tsc_cycles();
        }
        c->total_cycles += now - prev;
        prev = now;
        if (flush) {
            flush_counts(c);
            idle_rounds = 0;
        }
        __atomic_fetch_add(&c->epoch, 1, __ATOMIC_RELEASE);
    }
    fp_tx_drop_held(c);
    flush_counts(c);
    return 0;
}
