/*
 * Dual-stack AF_INET6 sockets.  Many programs open an AF_INET6 socket on ::
 * (iperf3 without -4, nginx `listen [::]`, Node.js, Java); their IPv4 peers
 * then appear as IPv4-mapped addresses (::ffff:a.b.c.d).  libtas takes such a
 * socket over and carries its IPv4 traffic on TAS:
 *  - bind to :: or to a mapped address, connect to a mapped address: TAS,
 *    addresses reported back as mapped AF_INET6 ones;
 *  - IPV6_V6ONLY set, bind to or connect to a real IPv6 address: TAS has no
 *    IPv6, so the socket (still unconnected) becomes a kernel AF_INET6 socket
 *    under the same number (sock_to_kernel.c).
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

void lt_loopback_addr(const struct lt_sock *s, struct sockaddr *a)
{
    uint32_t lo = htonl(INADDR_LOOPBACK);
    if (s->family == AF_INET6)      /* v4-mapped: a dual-stack socket */
        memcpy(&((struct sockaddr_in6 *)a)->sin6_addr.s6_addr[12], &lo, sizeof(lo));
    else
        ((struct sockaddr_in *)a)->sin_addr.s_addr = lo;
}

void lt_fill_addr(const struct lt_sock *s, struct sockaddr *addr, socklen_t *len, uint32_t ip,
                  uint16_t port)
{
    lt_fill_addr_family(s->family, addr, len, ip, port);
}

void lt_fill_addr_family(int family, struct sockaddr *addr, socklen_t *len, uint32_t ip,
                         uint16_t port)
{
    if (addr == NULL || len == NULL)
        return;
    if (family == AF_INET6) {
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
