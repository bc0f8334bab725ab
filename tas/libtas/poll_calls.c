/* poll, ppoll, select, pselect over a mix of TAS and kernel fds. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "interpose.h"

/* TAS fds get revents from the flow state; returns how many are ready. */
static int tas_revents(struct pollfd *fds, nfds_t n)
{
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
        struct lt_sock *s = lt_sock_of(fds[i].fd);
        if (s == NULL)
            continue;
        fds[i].revents = (short)(lt_ready(s) & (fds[i].events | POLLERR | POLLHUP));
        ready += fds[i].revents != 0;
    }
    return ready;
}

static int has_tas_fd(const struct pollfd *fds, nfds_t n)
{
    for (nfds_t i = 0; i < n; i++)
        if (lt_sock_of(fds[i].fd) != NULL)
            return 1;
    return 0;
}

int lt_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    if (!has_tas_fd(fds, n))
        return REAL(poll)(fds, n, timeout_ms);
    /* The kernel fds, compacted, and where each came from; then the kernel
     * twins of TAS listeners (listen_kernel.c), whose readiness is the
     * listener's too. */
    struct pollfd *kfds = malloc(2 * n * (sizeof(*kfds) + sizeof(nfds_t)));
    if (kfds == NULL) {
        errno = ENOMEM;
        return -1;
    }
    nfds_t *from = (nfds_t *)(kfds + 2 * n), nk = 0;
    for (nfds_t i = 0; i < n; i++) {
        if (lt_sock_of(fds[i].fd) == NULL) {
            from[nk] = i;
            kfds[nk++] = fds[i];
        }
    }
    nfds_t nplain = nk;
    for (nfds_t i = 0; i < n; i++) {
        struct lt_sock *s = lt_sock_of(fds[i].fd);
        if (s != NULL && s->kind == LT_LISTEN && s->kernel_fd >= 0 && (fds[i].events & POLLIN)) {
            from[nk] = i;
            kfds[nk++] = (struct pollfd){.fd = s->kernel_fd, .events = POLLIN};
        }
    }
    int64_t deadline = timeout_ms < 0 ? -1 : lt_now_ns() + (int64_t)timeout_ms * 1000000;
    int ready, kr;
    lt_lock();
    for (;;) {
        lt_progress();
        ready = tas_revents(fds, n);
        int left = lt_ms_left(deadline);
        if (ready > 0 || left == 0) {
            kr = nk > 0 ? REAL(poll)(kfds, nk, 0) : 0;
            break;
        }
        for (nfds_t i = 0; i < nk; i++)
            kfds[i].revents = 0;
        kr = lt_wait(kfds, nk, left);
        if (kr != 0) {
            ready = tas_revents(fds, n);
            break;
        }
    }
    lt_unlock();
    if (kr >= 0) {
        for (nfds_t i = 0; i < nk; i++) {
            if (i < nplain)
                fds[from[i]].revents = kfds[i].revents;
            else
                fds[from[i]].revents |= (short)(kfds[i].revents & POLLIN);
        }
        ready = 0;
        for (nfds_t i = 0; i < n; i++)
            ready += fds[i].revents != 0;
    }
    free(kfds);
    return kr < 0 ? -1 : ready;
}

int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    return lt_poll(fds, n, timeout_ms);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
    (void)fdslen;
    return lt_poll(fds, n, timeout_ms);
}

int lt_timespec_ms(const struct timespec *ts)
{
    if (ts == NULL)
        return -1;
    return (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
}

/* Not atomic like the kernel's: a signal between the mask changes is
 * delivered before the wait instead of interrupting it. */
int lt_with_sigmask(const sigset_t *mask, int (*call)(void *), void *arg)
{
    sigset_t old;
    if (mask != NULL)
        pthread_sigmask(SIG_SETMASK, mask, &old);
    int r = call(arg);
    int e = errno;
    if (mask != NULL)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

struct poll_args {
    struct pollfd *fds;
    nfds_t n;
    int timeout_ms;
};

static int poll_call(void *arg)
{
    struct poll_args *a = arg;
    return lt_poll(a->fds, a->n, a->timeout_ms);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
    if (!has_tas_fd(fds, n))
        return REAL(ppoll)(fds, n, ts, mask);
    struct poll_args a = {fds, n, lt_timespec_ms(ts)};
    return lt_with_sigmask(mask, poll_call, &a);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                size_t fdslen)
{
    (void)fdslen;
    return ppoll(fds, n, ts, mask);
}

static int sets_have_tas_fd(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
    for (int fd = 0; fd < nfds && fd < LT_MAX_FD; fd++)
        if (lt_sock_of(fd) != NULL && ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) ||
                                       (e && FD_ISSET(fd, e))))
            return 1;
    return 0;
}

/* select in terms of lt_poll. */
static int select_as_poll(int nfds, fd_set *r, fd_set *w, fd_set *e, int timeout_ms)
{
    struct pollfd *p = malloc(sizeof(*p) * (size_t)(nfds > 0 ? nfds : 1));
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) |
                           (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
                           (e && FD_ISSET(fd, e) ? POLLPRI : 0));
        if (ev != 0)
            p[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int rc = lt_poll(p, n, timeout_ms);
    for (nfds_t i = 0; rc >= 0 && i < n; i++) {
        if (p[i].revents & POLLNVAL) {
            errno = EBADF;
            rc = -1;
        }
    }
    if (rc >= 0) {
        rc = 0;
        for (nfds_t i = 0; i < n; i++) {
            int fd = p[i].fd;
            short got = p[i].revents;
            if (r && FD_ISSET(fd, r) && !(got & (POLLIN | POLLHUP | POLLERR)))
                FD_CLR(fd, r);
            if (w && FD_ISSET(fd, w) && !(got & (POLLOUT | POLLERR)))
                FD_CLR(fd, w);
            if (e && FD_ISSET(fd, e) && !(got & POLLPRI))
                FD_CLR(fd, e);
            rc += (r && FD_ISSET(fd, r)) + (w && FD_ISSET(fd, w)) + (e && FD_ISSET(fd, e));
        }
    }
    free(p);
    return rc;
}

int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    if (!sets_have_tas_fd(nfds, r, w, e))
        return REAL(select)(nfds, r, w, e, tv);
    int ms = tv == NULL ? -1 : (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000);
    return select_as_poll(nfds, r, w, e, ms);
}

struct select_args {
    int nfds;
    fd_set *r, *w, *e;
    int timeout_ms;
};

static int select_call(void *arg)
{
    struct select_args *a = arg;
    return select_as_poll(a->nfds, a->r, a->w, a->e, a->timeout_ms);
}

int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
            const sigset_t *mask)
{
    if (!sets_have_tas_fd(nfds, r, w, e))
        return REAL(pselect)(nfds, r, w, e, ts, mask);
    struct select_args a = {nfds, r, w, e, lt_timespec_ms(ts)};
    return lt_with_sigmask(mask, select_call, &a);
}
