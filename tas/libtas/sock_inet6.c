/*
 * Dual-stack AF_INET6 sockets.  Many programs open an AF_INET6 socket on ::
 * (iperf3 without -4, nginx `listen [::]`, Node.js, Java); their IPv4 peers
 * then appear as IPv4-mapped addresses (::ffff:a.b.c.d).  libtas takes such a
 * socket over and carries its IPv4 traffic on TAS:
 *  - bind to :: or to a mapped address, connect to a mapped address: TAS,
 *    addresses reported back as mapped AF_INET6 ones;
 *  - IPV6_V6ONLY set, bind to or connect to a real IPv6 address: TAS has no
 *    IPv6, so the socket (still unbound and unconnected) becomes a kernel
 *    AF_INET6 socket under the same number, with the options recorded so far.
 * A TAS listener on :: therefore takes IPv4 connections only; IPv6 clients
 * of that port are refused (README says so).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "interpose.h"

int lt_inet_addr_of(const struct lt_sock *s, const struct sockaddr *a, socklen_t len,
                    uint32_t *ip, uint16_t *port)
{
    if (a == NULL)
        return -EINVAL;
    if (s->family == AF_INET) {
        if (len < sizeof(struct sockaddr_in))
            return -EINVAL;
        if (a->sa_family != AF_INET)
            return -EAFNOSUPPORT;
        const struct sockaddr_in *in = (const struct sockaddr_in *)a;
        *ip = ntohl(in->sin_addr.s_addr);
        *port = ntohs(in->sin_port);
        return 0;
    }
    if (len < sizeof(struct sockaddr_in6) || a->sa_family != AF_INET6)
        return -EINVAL;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
    *port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) {
        *ip = 0;
        return s->v6only ? LT_IPV6_PROPER : 0;
    }
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && !s->v6only) {
        uint32_t v4;
        memcpy(&v4, &in6->sin6_addr.s6_addr[12], sizeof(v4));
        *ip = ntohl(v4);
        return 0;
    }
    return LT_IPV6_PROPER;
}

void lt_fill_addr(const struct lt_sock *s, struct sockaddr *addr, socklen_t *len, uint32_t ip,
                  uint16_t port)
{
    if (addr == NULL || len == NULL)
        return;
    if (s->family == AF_INET6) {
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        if (ip != 0) {          /* 0.0.0.0 stays :: (an unbound or wildcard socket) */
            in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
            uint32_t v4 = htonl(ip);
            memcpy(&in6.sin6_addr.s6_addr[12], &v4, sizeof(v4));
        }
        memcpy(addr, &in6, *len < sizeof(in6) ? *len : sizeof(in6));
        *len = sizeof(in6);
        return;
    }
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(ip)};
    memcpy(addr, &in, *len < sizeof(in) ? *len : sizeof(in));
    *len = sizeof(in);
}

int lt_to_kernel(int fd, struct lt_sock *s)
{
    if (s->kind != LT_NEW || s->refs > 1) {
        fprintf(stderr, "libtas: AF_INET6 socket %d needs IPv6, which TAS does not carry, "
                        "and it can no longer move to the kernel stack\n", fd);
        return -EAFNOSUPPORT;
    }
    int fdflags = REAL(fcntl)(fd, F_GETFD);
    int k = REAL(socket)(AF_INET6, SOCK_STREAM | (s->nonblock ? SOCK_NONBLOCK : 0), 0);
    if (k < 0)
        return -errno;
    int one = 1;
    if (s->v6only)
        REAL(setsockopt)(k, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (s->reuseaddr)
        REAL(setsockopt)(k, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->reuseport)
        REAL(setsockopt)(k, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    lt_lock();
    lt_fd_map(fd, NULL);
    int r = REAL(dup3)(k, fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
    lt_sock_unref(s);
    lt_unlock();
    REAL(close)(k);
    return r < 0 ? -errno : 0;
}

/* Options of a not yet bound AF_INET6 socket that a move to the kernel
 * must keep; 1 if (level, name) is one of them. */
int lt_record_option(struct lt_sock *s, int level, int name, const void *val, socklen_t len)
{
    int on = val != NULL && len >= sizeof(int) && *(const int *)val != 0;
    if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
        s->v6only = on;
    else if (level == SOL_SOCKET && name == SO_REUSEADDR)
        s->reuseaddr = on;
    else if (level == SOL_SOCKET && name == SO_REUSEPORT)
        s->reuseport = on;
    else
        return 0;
    return 1;
}
