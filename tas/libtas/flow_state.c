/* The engine over the core: applying its notifications and events to the
 * flows (flow_table.c) and to pending connects (conn_open.c), requests to the
 * daemon, and blocking until something happens. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

#include "interpose.h"
#include "kb/env.h"

#define LT_MAX_SLEEP_MS 20

/* Threads asleep in lt_wait.  The fast path writes the app's eventfd only
 * while app_sleeping is set and one thread reads it, so whoever applies
 * notifications wakes the other sleepers: their flows may have changed. */
static int sleepers;
static int wake_fd = -1;       /* semaphore eventfd: one token per sleeper */
/* Grows whenever a thread applies notifications (lock held).  A thread that
 * spins before sleeping lets go of the lock and is no sleeper meanwhile: if
 * another thread applied notifications then (perhaps for this thread's
 * sockets, which it looked at before), it must look again, not sleep. */
static uint64_t progress_gen;
static int slept_out;          /* the last lt_wait slept a whole slice: nothing woke it */

int lt_wait_slept_out(void)
{
    return slept_out;
}

/* A forked child's: the parent's sleepers and eventfd are not its own. */
void lt_wait_forget(void)
{
    sleepers = 0;
    if (wake_fd >= 0)
        REAL(close)(wake_fd);
    wake_fd = -1;
}

int lt_wait_fd(void)
{
    return wake_fd;
}

static void wake_sleepers(void)
{
    if (sleepers == 0)
        return;
    if (wake_fd < 0)
        wake_fd = eventfd(0, EFD_NONBLOCK | EFD_SEMAPHORE | EFD_CLOEXEC);
    uint64_t n = (uint64_t)sleepers;
    ssize_t w = REAL(write)(wake_fd, &n, sizeof(n));
    (void)w;
}

static void listener_newconn(uint32_t listener_id)
{
    for (struct lt_sock *s = lt_listeners; s != NULL; s = s->next_listener)
        if (s->listener_id == listener_id) {
            s->pending++;
            s->in_seq++;
        }
}

static int control_events(void);

int lt_progress(void)
{
    struct tas_arx arx[64];
    int total = 0, n;
    if (lt_app == NULL)        /* a forked child not attached (yet) */
        return 0;
    do {
        n = tas_app_poll(lt_app, arx, 64);
        bool looked = false;
        for (int i = 0; i < n; i++) {
            if (arx[i].type == TAS_ARX_NEWCONN) {   /* ahead of the flow's others */
                lt_handoff_fast(&arx[i]);
                continue;
            }
            if (arx[i].type == TAS_ARX_OPENED) {    /* ahead of the flow's others */
                lt_connect_opened(&arx[i]);
                continue;
            }
            /* A flow we do not know (or closed, its id now reused) may be
             * one handed over with a NEWCONN still unread: read that first
             * (once a batch), or its first data would be taken for the old
             * flow's and released. */
            struct lt_flow *f = lt_flow_get(arx[i].flow_id);
            if (!looked && (f->dead || (!f->opened && !f->handed))) {
                /* Its NEWCONN may be in the socket before the daemon
                 * counted it in ctl_sent: look whatever the count says. */
                tas_app_ctl_kick(lt_app);
                total += control_events();
                looked = true;
            }
            lt_flow_notify(lt_flow_get(arx[i].flow_id), &arx[i]);
            if (arx[i].flags & TAS_ARX_FL_ESTABLISHED)
                lt_handoff_established(arx[i].flow_id);
        }
        total += n;
    } while (n == 64);
    total += control_events();
    if (total > 0) {
        progress_gen++;
        wake_sleepers();
    }
    return total;
}

static int control_events(void)
{
    int total = 0;
    struct tas_ctl_msg ev;
    if (!tas_app_ctl_maybe(lt_app))
        return 0;              /* nothing sent since we last looked */
    while (tas_app_event(lt_app, &ev)) {
        if (ev.type == TAS_CTL_NEWCONN && (ev.flags & TAS_CTL_FL_HANDOFF))
            lt_handoff_arrived(&ev);
        else if (ev.type == TAS_CTL_NEWCONN)
            listener_newconn(ev.listener_id);
        else if (ev.type == TAS_CTL_CONN_CLOSED && (ev.flags & TAS_CTL_FL_MOVED))
            lt_handoff_moved(ev.flow_id);
        else if (ev.type == TAS_CTL_CONN_CLOSED && lt_handoff_closed(ev.flow_id)) {
            /* dropped before it could be accepted */
        } else if (ev.type == TAS_CTL_CONN_CLOSED && lt_flow_get(ev.flow_id)->quiet_closed) {
            /* Reset before the daemon saw our close on the flow (gone from
             * the fast path now): say it in a message. */
            struct tas_ctl_msg c = {.type = TAS_CTL_CLOSE, .flags = TAS_CTL_FL_NOREPLY,
                                    .flow_id = ev.flow_id};
            lt_flow_get(ev.flow_id)->quiet_closed = 0;
            tas_app_send(lt_app, &c);
        } else if (ev.type == TAS_CTL_CONN_CLOSED &&
                   !lt_flow_get(ev.flow_id)->opened && !lt_flow_get(ev.flow_id)->handed) {
            /* A connection the fast path handed over, its TAS_ARX_NEWCONN
             * not applied yet: it is gone before it could be accepted. */
            lt_handoff_closed_early(ev.flow_id);
        } else if (ev.type == TAS_CTL_CONN_CLOSED) {
            struct lt_flow *f = lt_flow_get(ev.flow_id);
            f->reset = 1;
            f->fp_reset = 0;   /* the daemon holds it as reset: close with a message */
            f->in_seq++;
            f->out_seq++;
        }
        else if (ev.type == TAS_CTL_CONN_OPENED)
            lt_connect_done(&ev);
        total++;
    }
    return total;
}

int lt_request(struct tas_ctl_msg *m)
{
    int st = tas_app_request(lt_app, m);
    lt_progress();             /* events queued while waiting for the reply */
    return st;
}

uint64_t lt_activity(struct lt_sock *s, uint32_t events)
{
    /* Sums of counters that only grow: a change in any shows.  The loss of
     * the daemon is one more event for a connection (it fails now). */
    uint64_t n = s->kind != LT_LISTEN && lt_app != NULL && tas_app_lost(lt_app) ? 1 : 0;
    if (events & EPOLLIN)
        n += s->in_seq + (s->flow != NULL ? s->flow->in_seq : 0);
    if (events & EPOLLOUT)
        n += s->out_seq + (s->flow != NULL ? s->flow->out_seq : 0);
    return n;
}

static uint32_t *app_sleeping(void)
{
    uint8_t *base = tas_app_base(lt_app);
    const struct tas_seg_hdr *h = (const struct tas_seg_hdr *)base;
    return &((struct tas_ctx_shm *)(base + h->ctx_off[0]))->app_sleeping;
}

/* Microseconds to spin before sleeping (TAS_SPIN_US, default 50): a reply
 * often comes within microseconds, and sleeping costs two context switches
 * and an eventfd write by the fast path.  Spinning yields the CPU, so a fast
 * path or peer sharing it runs meanwhile. */
static long spin_ns = -1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool spin_for_notifications(void)
{
    if (spin_ns < 0) {
        const char *e = kb_getenv("TAS_SPIN_US");
        spin_ns = (e != NULL ? strtol(e, NULL, 10) : 50) * 1000;
    }
    if (spin_ns <= 0)
        return false;
    lt_unlock();
    uint64_t end = now_ns() + (uint64_t)spin_ns;
    bool got;
    while (!(got = tas_app_pending(lt_app)) && now_ns() < end)
        sched_yield();
    lt_lock();
    return got;
}

static int wait_masked(struct pollfd *kfds, nfds_t n, int timeout_ms, const sigset_t *mask);

int lt_wait(struct pollfd *kfds, nfds_t n, int timeout_ms)
{
    slept_out = 0;
    if (lt_app == NULL) {      /* not attached: kernel descriptors only */
        lt_unlock();
        int r = REAL(poll)(kfds, n, timeout_ms < 0 || timeout_ms > LT_MAX_SLEEP_MS ?
                           LT_MAX_SLEEP_MS : timeout_ms);
        lt_lock();
        return r;
    }
    /* Our own holds must not keep the window shut while we sleep. */
    if (timeout_ms != 0)
        tas_app_rx_before_sleep(lt_app);
    /* Signals wait until we sleep (ppoll unblocks them atomically): one that
     * arrives while we spin or look for work interrupts the sleep with EINTR,
     * as it would the kernel's epoll_wait.  Otherwise it was lost between
     * two sleep slices, and a server waiting without timeout (nginx) never
     * saw its SIGTERM. */
    sigset_t all_signals, old;
    sigfillset(&all_signals);
    pthread_sigmask(SIG_BLOCK, &all_signals, &old);
    int r = wait_masked(kfds, n, timeout_ms, &old);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

/* Once the daemon is gone its sockets stay readable (EOF) and nothing will
 * come: a call that waits only for TAS fails with ENETDOWN, poll/epoll
 * report the connections as failed (sock_ready.c) and sleep on their
 * kernel descriptors alone.  Said once on stderr. */
static bool daemon_lost(void)
{
    static bool said;
    if (!tas_app_lost(lt_app))
        return false;
    if (!said) {
        said = true;
        fprintf(stderr, "libtas: the TAS daemon closed its connection (stopped or killed): "
                        "TAS sockets fail with ENETDOWN\n");
    }
    return true;
}

static int wait_masked(struct pollfd *kfds, nfds_t n, int timeout_ms, const sigset_t *mask)
{
    bool lost = daemon_lost();
    if (lost && n == 0) {
        errno = ENETDOWN;
        return -1;
    }
    uint64_t gen = progress_gen;
    if (!lost && timeout_ms != 0 && spin_for_notifications() && lt_progress() > 0)
        return 0;
    if (progress_gen != gen)
        return 0;          /* another thread's progress while we spun: look again */
    /* The protocol of tas_app_wait: announce sleep, look once more, sleep on
     * the eventfd the fast path writes while we are marked sleeping. */
    uint32_t *sleeping = app_sleeping();
    __atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
    if (lt_progress() > 0) {
        if (sleepers == 0)
            __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
        return 0;
    }
    if (wake_fd < 0)
        wake_fd = eventfd(0, EFD_NONBLOCK | EFD_SEMAPHORE | EFD_CLOEXEC);
    struct pollfd small[64];
    struct pollfd *all = n + 3 <= 64 ? small : malloc((n + 3) * sizeof(*all));
    if (all == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (n > 0)
        memcpy(all, kfds, n * sizeof(*all));
    /* a negative fd is skipped by ppoll */
    all[n] = (struct pollfd){.fd = lost ? -1 : tas_app_ev_fd(lt_app), .events = POLLIN};
    all[n + 1] = (struct pollfd){.fd = lost ? -1 : tas_app_ctl_fd(lt_app), .events = POLLIN};
    all[n + 2] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
    sleepers++;
    lt_unlock();
    /* Sleep at most LT_MAX_SLEEP_MS at a time: callers loop and re-check, so
     * a wake-up lost between several sleeping threads costs a bounded delay
     * instead of a hang. */
    int slice = timeout_ms < 0 || timeout_ms > LT_MAX_SLEEP_MS ? LT_MAX_SLEEP_MS : timeout_ms;
    struct timespec ts = {.tv_sec = slice / 1000, .tv_nsec = (long)(slice % 1000) * 1000000};
    int r = REAL(ppoll)(all, n + 3, &ts, mask);
    int e = errno;
    lt_lock();
    slept_out = r == 0 && slice == LT_MAX_SLEEP_MS;
    if (--sleepers == 0)
        __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
    int kready = 0;
    if (r > 0) {
        uint64_t v;            /* our eventfd is non-blocking */
        if (all[n].revents & POLLIN)
            tas_app_clear_wake(lt_app);
        if (all[n + 1].revents != 0)
            tas_app_ctl_kick(lt_app);
        if (all[n + 2].revents & POLLIN && REAL(read)(wake_fd, &v, sizeof(v)) < 0)
            v = 0;
        for (nfds_t i = 0; i < n; i++) {
            kfds[i].revents = all[i].revents;
            kready += all[i].revents != 0;
        }
    }
    if (all != small)
        free(all);
    if (r < 0) {
        errno = e;
        return -1;
    }
    lt_progress();
    return kready;
}

int64_t lt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int lt_ms_left(int64_t deadline_ns)
{
    if (deadline_ns < 0)
        return -1;
    int64_t left = deadline_ns - lt_now_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

int64_t lt_deadline(int64_t timeo_us)
{
    return timeo_us == 0 ? -1 : lt_now_ns() + timeo_us * 1000;
}

/* Whether a signal that interrupted a wait is one the kernel would have
 * restarted the call after: every signal this thread takes (not blocked)
 * whose disposition is a handler has SA_RESTART.  Which one came cannot be
 * known after the fact, so with handlers of both kinds the call returns
 * EINTR (a program that installs one without SA_RESTART handles it). */
static bool signals_restart(void)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigismember(&cur, sig) == 1 || sigaction(sig, NULL, &sa) != 0)
            continue;
        if (!(sa.sa_flags & SA_SIGINFO) &&
            (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
            continue;
        if (!(sa.sa_flags & SA_RESTART))
            return false;
    }
    return true;
}

int lt_wait_call(struct pollfd *kfds, nfds_t n, int64_t deadline_ns)
{
    int ms = lt_ms_left(deadline_ns);
    if (ms == 0)
        return -EAGAIN;
    int r = lt_wait(kfds, n, ms);
    if (r >= 0)
        return r;
    if (errno == EINTR && deadline_ns < 0 && signals_restart())
        return 0;
    return -errno;
}

int lt_daemon_lost(void)
{
    return lt_app != NULL && daemon_lost();
}

/* The daemon's end of the control connection closes when it dies, which no
 * counter in shared memory shows: a thread that only writes into free ring
 * space (or reads without blocking) would not notice.  At most every 10 ms
 * (a coarse clock, no system call otherwise) the socket is asked. */
void lt_check_daemon(void)
{
    static int64_t next_ns;
    if (lt_app == NULL || tas_app_lost(lt_app))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (now < next_ns)
        return;
    next_ns = now + 10 * 1000000;
    struct pollfd p = {.fd = tas_app_ctl_fd(lt_app), .events = POLLIN};
    if (REAL(poll)(&p, 1, 0) > 0) {
        tas_app_ctl_kick(lt_app);
        lt_progress();
    }
}
