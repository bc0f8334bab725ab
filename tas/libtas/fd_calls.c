/* close, dup and shutdown: fd numbers sharing one TAS socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
