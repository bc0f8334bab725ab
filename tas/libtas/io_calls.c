/* The libc entry points of the read and write families (and glibc's
 * _FORTIFY_SOURCE variants, which would otherwise bypass the shim). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "interpose.h"
#include "kb/scm.h"

ssize_t read(int fd, void *buf, size_t len)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(read)(fd, buf, len);
    struct iovec v = {.iov_base = buf, .iov_len = len};
    return lt_sock_done(s, lt_recv_iov(s, &v, 1, 0));
}

ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    (void)buflen;
    return read(fd, buf, len);
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
    struct lt_sock *s = lt_sock_hold(fd);
    return s == NULL ? REAL(readv)(fd, iov, n) : lt_sock_done(s, lt_recv_iov(s, iov, n, 0));
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src,
                 socklen_t *srclen)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(recvfrom)(fd, buf, len, flags, src, srclen);
    struct iovec v = {.iov_base = buf, .iov_len = len};
    ssize_t r = lt_recv_iov(s, &v, 1, flags);
    if (r >= 0)
        lt_fill_addr(s, src, srclen, s->remote_ip, s->remote_port);
    return lt_sock_done(s, r);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                       struct sockaddr *src, socklen_t *srclen)
{
    (void)buflen;
    return recvfrom(fd, buf, len, flags, src, srclen);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    (void)buflen;
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(recvmsg)(fd, msg, flags);
    ssize_t r = lt_recv_iov(s, msg->msg_iov, (int)msg->msg_iovlen, flags);
    if (r >= 0) {
        if (msg->msg_name != NULL)
            lt_fill_addr(s, msg->msg_name, &msg->msg_namelen, s->remote_ip, s->remote_port);
        msg->msg_controllen = 0;
        msg->msg_flags = 0;
    }
    return lt_sock_done(s, r);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(write)(fd, buf, len);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return lt_sock_done(s, lt_send_iov(s, &v, 1, 0));
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    struct lt_sock *s = lt_sock_hold(fd);
    return s == NULL ? REAL(writev)(fd, iov, n) : lt_sock_done(s, lt_send_iov(s, iov, n, 0));
}

/* The destination of a connected stream socket is ignored, as by Linux. */
ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst,
               socklen_t dstlen)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(sendto)(fd, buf, len, flags, dst, dstlen);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return lt_sock_done(s, lt_send_iov(s, &v, 1, flags));
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    return sendto(fd, buf, len, flags, NULL, 0);
}

/* A TAS socket among the descriptors of an SCM_RIGHTS message: what would
 * travel is its placeholder (an O_PATH descriptor of /dev/null), which the
 * receiver cannot use, while the sender believes it passed the connection
 * (and its close then ends it). */
static int tas_socket_fd(int fd, void *arg)
{
    (void)arg;
    return lt_sock_of(fd) != NULL ? fd + 1 : 0; /* fd + 1: descriptor 0 is one too */
}

static int passes_tas_socket(const struct msghdr *msg)
{
    return kb_scm_each_fd(msg, tas_socket_fd, NULL) - 1;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL) {
        int tas = passes_tas_socket(msg);
        if (tas >= 0) {
            fprintf(stderr, "libtas: descriptor %d is a TAS socket, which cannot be passed "
                            "to another process (SCM_RIGHTS): sendmsg fails with EOPNOTSUPP\n",
                    tas);
            errno = EOPNOTSUPP;
            return -1;
        }
        return REAL(sendmsg)(fd, msg, flags);
    }
    return lt_sock_done(s, lt_send_iov(s, msg->msg_iov, (int)msg->msg_iovlen, flags));
}
