/*
 * connect() on TAS sockets, blocking and non-blocking, with Linux's
 * semantics: EINPROGRESS at once on a non-blocking socket, writable (or
 * POLLERR|POLLHUP with SO_ERROR set) when the handshake ends, EALREADY while
 * it runs, and the first connect() after it ends reports the outcome (0, or
 * the error) before later ones answer EISCONN / start a new attempt.
 *
 * The connect goes to the fast path without waiting (tas_app_connect); once
 * the handshake is over, the fast path answers with a TAS_ARX_OPENED entry
 * carrying the request's req_id, or the slow path, if the fast path left
 * the connect to it, with a CONN_OPENED; lt_progress hands either to
 * lt_connect_done (conn_open.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "interpose.h"

static int fail(int e)
{
    errno = e;
    return -1;
}

/* The outcome of a finished connect, reported once (Linux clears the error
 * it returns, and the socket is a fresh unconnected one again). */
static int report(struct lt_sock *s)
{
    s->connect_unreported = 0;
    if (s->kind == LT_CONN)
        return 0;
    int e = s->so_error;
    s->so_error = 0;
    s->hup = 0;
    return -(e != 0 ? e : ECONNABORTED);
}

/* With the lock held: wait for a pending connect to finish.  On EINTR, or
 * once SO_SNDTIMEO runs out (EINPROGRESS), the handshake goes on, as on
 * Linux. */
static int wait_done(struct lt_sock *s)
{
    int64_t deadline = lt_deadline(s->sndtimeo_us);
    for (;;) {
        lt_progress();
        if (s->kind != LT_CONNECTING)
            return report(s);
        int w = lt_wait_call(NULL, 0, deadline);
        if (w < 0)
            return w == -EAGAIN ? -EINPROGRESS : w;
    }
}

static int start(struct lt_sock *s, const struct sockaddr *addr, socklen_t len)
{
    uint32_t ip, req_id;
    uint16_t port;
    int r = lt_inet_addr_of(s, addr, len, &ip, &port);
    if (r < 0)
        return r;
    if (r == LT_IPV6_PROPER)   /* a connected socket cannot move to the kernel any more */
        return -ENETUNREACH;
    if (s->local_port != 0) {
        /* The fast path and the slow path pick the local port of a
         * connect: a bound one is not honoured.  Said, not hidden (FTP's
         * port 20, rsh's reserved ports, a firewall rule would miss it). */
        static int said;
        if (!said) {
            said = 1;
            fprintf(stderr, "libtas: connect() from a socket bound to port %u: TAS chooses "
                            "the local port, %u is not used\n", s->local_port, s->local_port);
        }
    }
    struct lt_pending_connect *p = lt_connect_pending_new();
    if (p == NULL)
        return -ENOMEM;
    r = tas_app_connect(lt_app, ip, port, &req_id);
    if (r < 0) {
        free(p);
        return r;
    }
    lt_connect_pending_add(p, req_id, s);
    s->kind = LT_CONNECTING;
    s->so_error = 0;
    s->hup = 0;
    s->remote_ip = ip;
    s->remote_port = port;
    return s->nonblock ? -EINPROGRESS : wait_done(s);
}

static int connect_locked(struct lt_sock *s, const struct sockaddr *addr, socklen_t len)
{
    lt_progress();
    if (s->connect_unreported && s->kind != LT_CONNECTING)
        return report(s);
    switch (s->kind) {
    case LT_NEW:
        return start(s, addr, len);
    case LT_CONNECTING:
        return s->nonblock ? -EALREADY : wait_done(s);
    case LT_CONN:
        return -EISCONN;
    default:
        return -EINVAL;
    }
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct lt_sock *n = lt_sock_of(fd);
    uint32_t ip;
    uint16_t port;
    if (n != NULL && n->kind == LT_NEW) {
        /* An IPv6 peer, or one TAS does not reach (loopback, another
         * network): the kernel's stack, as without the shim. */
        int a = lt_inet_addr_of(n, addr, len, &ip, &port);
        const char *why = a == LT_IPV6_PROPER ? "IPv6"
                          : a == 0 && lt_app != NULL && !tas_app_carries(lt_app, ip)
                          ? "a destination outside TAS's subnet" : NULL;
        if (why != NULL) {
            /* The daemon's own address: another app on this host, whose
             * listener's kernel twin (listen_kernel.c) answers on loopback. */
            struct sockaddr_storage lo;
            if (a == 0 && ip == tas_app_ip(lt_app) && len <= sizeof(lo)) {
                memcpy(&lo, addr, len);
                lt_loopback_addr(n, (struct sockaddr *)&lo);
                addr = (struct sockaddr *)&lo;
                why = "the daemon's own address (through loopback)";
            }
            int r = lt_to_kernel(fd, n, why);
            return r < 0 ? fail(-r) : REAL(connect)(fd, addr, len);
        }
    }
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(connect)(fd, addr, len);
    lt_lock();
    int r = connect_locked(s, addr, len);
    lt_unlock();
    return (int)lt_sock_done(s, r < 0 ? fail(-r) : 0);
}

int lt_connect_wait_io(struct lt_sock *s, int block)
{
    lt_claim(s);               /* an inherited connection's first use */
    lt_progress();
    if (s->kind == LT_CONNECTING && !block)
        return -EAGAIN;
    while (s->kind == LT_CONNECTING) {
        int w = lt_wait_call(NULL, 0, -1);
        if (w < 0)
            return w;
    }
    if (s->kind == LT_CONN)
        return 0;
    if (s->kind == LT_NEW && s->so_error != 0) {    /* Linux returns (and clears) the error */
        int e = s->so_error;
        s->so_error = 0;
        return -e;
    }
    return -ENOTCONN;
}
