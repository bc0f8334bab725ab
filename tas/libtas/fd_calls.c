/* close, dup and shutdown: fd numbers sharing one TAS socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdlib.h>
#include <unistd.h>

#include "interpose.h"

/* With the lock held: fd no longer names a TAS socket or epoll set. */
static void forget_fd(int fd)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s != NULL) {
        lt_fd_map(fd, NULL);
        lt_sock_unref(s);
    }
}

int close(int fd)
{
    lt_epoll_closed(fd);
    if (lt_sock_of(fd) == NULL) {
        lt_fd_moved(fd, 0);       /* its number no longer names the moved socket */
        return REAL(close)(fd);
    }
    lt_lock();
    forget_fd(fd);
    lt_unlock();
    return REAL(close)(fd);
}

/* libtas's own descriptors: the attachment's, the sleepers' eventfd, the
 * kernel twins of listeners, the fork marker of inherited connections (it
 * must reach the program a child execs).  A close_range over them leaves
 * them open, as libstrata leaves its lock fd: they are close-on-exec unless
 * the marker must survive.  Into out (at most max); returns how many. */
#define LT_OWN_MAX 512
static int own_fds(int *out, int max)
{
    int n = 0;
    lt_lock();
    if (lt_app != NULL)
        n = tas_app_fds(lt_app, out, max);
    const int loose[] = {lt_fork_marker_fd(), lt_wait_fd()};
    for (unsigned i = 0; i < sizeof(loose) / sizeof(loose[0]); i++)
        if (loose[i] >= 0 && n < max)
            out[n++] = loose[i];
    for (const struct lt_sock *s = lt_listeners; s != NULL && n < max; s = s->next_listener)
        if (s->kernel_fd >= 0)
            out[n++] = s->kernel_fd;
    lt_unlock();
    return n;
}

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* close_range/closefrom (daemons after fork; Python's subprocess child
 * before exec; os.closerange): the TAS sockets and epoll sets in the range
 * are closed as close() closes them.  Behind our back the kernel would
 * reuse their numbers under the table, and a file opened at one would be
 * taken for the socket (its writes sent to the peer).  CLOSE_RANGE_CLOEXEC
 * only marks descriptors: nothing is closed now. */
int close_range(unsigned int first, unsigned int last, int flags)
{
    if (REAL(close_range) == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if ((flags & CLOSE_RANGE_CLOEXEC) || first > last)
        return REAL(close_range)(first, last, flags);
    int own[LT_OWN_MAX], nown = own_fds(own, LT_OWN_MAX);
    qsort(own, (size_t)nown, sizeof(own[0]), cmp_int);
    unsigned int top = last < LT_MAX_FD - 1 ? last : LT_MAX_FD - 1;
    int k = 0;
    for (unsigned int fd = first; fd <= top; fd++) {
        while (k < nown && (unsigned int)own[k] < fd)
            k++;
        if (k < nown && (unsigned int)own[k] == fd)
            continue;
        lt_epoll_closed((int)fd);
        lt_fd_moved((int)fd, 0);
        if (lt_sock_of((int)fd) != NULL) {
            lt_lock();
            forget_fd((int)fd);
            lt_unlock();
        }
    }
    /* the range less our own descriptors, a run at a time */
    uint64_t from = first;
    for (int i = 0; i < nown; i++) {
        unsigned int fd = (unsigned int)own[i];
        if (fd < from || fd > last)
            continue;
        if (fd > from && REAL(close_range)((unsigned int)from, fd - 1, flags) != 0)
            return -1;
        from = (uint64_t)fd + 1;
    }
    return from <= last ? REAL(close_range)((unsigned int)from, last, flags) : 0;
}

void closefrom(int lowfd)
{
    close_range(lowfd < 0 ? 0u : (unsigned int)lowfd, ~0u, 0);
}

int dup(int fd)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(dup)(fd);
    lt_lock();
    int r = lt_dup_result(s, REAL(dup)(fd));
    lt_unlock();
    return r;
}

int dup3(int fd, int nfd, int flags)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (fd == nfd || (s == NULL && lt_sock_of(nfd) == NULL))
        return flags < 0 ? REAL(dup2)(fd, nfd) : REAL(dup3)(fd, nfd, flags);
    lt_epoll_closed(nfd);
    lt_lock();
    int r = flags < 0 ? REAL(dup2)(fd, nfd) : REAL(dup3)(fd, nfd, flags);
    if (r >= 0) {
        forget_fd(nfd);        /* dup2 closes the old nfd silently */
        if (s != NULL)
            lt_dup_result(s, r);
    }
    lt_unlock();
    return r;
}

int dup2(int fd, int nfd)
{
    return dup3(fd, nfd, -1);  /* -1: dup2's semantics (fd == nfd allowed) */
}

int shutdown(int fd, int how)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(shutdown)(fd, how);
    if (s->claim_flow != 0) {  /* inherited over fork: its first use */
        lt_lock();
        lt_claim(s);
        lt_unlock();
    }
    if (s->kind == LT_LISTEN) {
        /* As Linux: SHUT_WR does nothing to a listener, SHUT_RD stops it
         * and wakes the threads in accept (servers stop accept loops so);
         * it answered ENOTCONN and an accept waited on forever. */
        if (how != SHUT_WR) {
            lt_lock();
            lt_listen_shutdown(s);
            lt_unlock();
        }
        return 0;
    }
    if (s->kind != LT_CONN) {
        errno = ENOTCONN;
        return -1;
    }
    lt_lock();
    if (how != SHUT_RD && !s->shut_wr) {
        s->shut_wr = 1;
        if (!s->flow->reset)
            tas_app_post(lt_app, s->flow->id, 0, 0, TAS_ATX_FL_TXFIN);
    }
    if (how != SHUT_WR) {
        s->shut_rd = 1;
        s->in_seq++;
    }
    lt_unlock();
    return 0;
}
