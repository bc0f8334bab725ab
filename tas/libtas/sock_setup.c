/* socket, bind, listen, accept for TAS sockets (connect: sock_connect.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "interpose.h"

static int fail(int e)
{
    errno = e;
    return -1;
}

int socket(int domain, int type, int protocol)
{
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if ((domain != AF_INET && domain != AF_INET6) || base != SOCK_STREAM ||
        (protocol != 0 && protocol != IPPROTO_TCP))
        return REAL(socket)(domain, type, protocol);
    lt_lock();
    int fd = -1;
    if (!lt_attach()) {
        int refused = lt_attach_refused();
        lt_unlock();
        if (refused) {
            errno = ENETDOWN;
            return -1;
        }
        return REAL(socket)(domain, type, protocol);
    }
    struct lt_sock *s = lt_sock_new();
    if (s != NULL) {
        s->nonblock = !!(type & SOCK_NONBLOCK);
        s->family = domain;
        fd = lt_fd_install(s, type & SOCK_CLOEXEC);
        if (fd < 0)
            lt_sock_unref(s);
    }
    lt_unlock();
    return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(bind)(fd, addr, len);
    if (s->kind != LT_NEW)
        return fail(EINVAL);
    int r = lt_inet_addr_of(s, addr, len, &s->local_ip, &s->local_port);
    /* The daemon's own address is TAS's (nginx `listen 10.0.0.2:80`, a
     * client choosing its source address), although a connect to it is not
     * (tas_app_carries: another app on this host, through loopback). */
    if (r == LT_IPV6_PROPER || (r == 0 && s->local_ip != 0 && lt_app != NULL &&
                                 s->local_ip != tas_app_ip(lt_app) &&
                                 !tas_app_carries(lt_app, s->local_ip))) {
        /* IPv6 itself, or an address of the kernel's (127.0.0.1, another
         * network): the kernel's socket, as without the shim */
        r = lt_to_kernel(fd, s, r == LT_IPV6_PROPER ? "IPv6" : "an address outside TAS's subnet");
        return r < 0 ? fail(-r) : REAL(bind)(fd, addr, len);
    }
    if (r == 0)
        lt_record_bind(s, addr, len);
    return r < 0 ? fail(-r) : 0;
}

int listen(int fd, int backlog)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(listen)(fd, backlog);
    if (s->kind == LT_LISTEN && s->listen_shut) {
        /* shut down, then listened on again (Linux allows it): anew */
        lt_lock();
        if (s->kernel_fd >= 0)
            REAL(close)(s->kernel_fd);
        s->kernel_fd = -1;
        s->kind = LT_NEW;
        s->listen_shut = s->rejoin = 0;
        lt_unlock();
    }
    if (s->kind == LT_LISTEN)
        return 0;
    if (s->kind != LT_NEW)
        return fail(EINVAL);
    struct tas_ctl_msg m = {.type = TAS_CTL_LISTEN,
                            .flags = TAS_CTL_FL_HANDOFF |
                                     (s->reuseaddr ? TAS_CTL_FL_REUSEADDR : 0),
                            .local_port = s->local_port,
                            .backlog = backlog > 0 ? (uint32_t)backlog : 1};
    lt_lock();
    int st = tas_app_request(lt_app, &m);   /* linked before the queues are read: */
    if (st == 0) {                          /* see lt_listener_rejoin */
        s->kind = LT_LISTEN;
        s->listener_id = m.listener_id;
        s->local_port = m.local_port;       /* the daemon's pick for port 0 */
        s->join_key = m.opaque;
        lt_handoff_counter(s, &m);
        /* What we asked for (the reply does not echo it): a prefork worker
         * joins with it (it was 0, a backlog of 1, and workers dropped SYNs). */
        s->backlog = backlog > 0 ? (uint32_t)backlog : 1;
        s->next_listener = lt_listeners;
        lt_listeners = s;
        lt_listen_kernel_open(s);
    }
    lt_progress();
    lt_unlock();
    return st == 0 ? 0 : fail(-st);
}

int lt_listener_rejoin(struct lt_sock *s)
{
    if (!s->rejoin)
        return 0;
    if (!lt_attach())
        return -ENOTCONN;
    struct tas_ctl_msg m = {.type = TAS_CTL_LISTEN,
                            .flags = TAS_CTL_FL_SHARED | TAS_CTL_FL_HANDOFF |
                                     (s->reuseaddr ? TAS_CTL_FL_REUSEADDR : 0),
                            .local_port = s->local_port, .backlog = s->backlog,
                            .opaque = s->join_key};
    /* Not lt_request: nothing may be read from the queues until the
     * listener is linked, or a connection the daemon hands it at once (a
     * prefork master's moved to this worker) finds no listener and is reset. */
    int st = tas_app_request(lt_app, &m);
    if (st != 0)
        return st;
    s->rejoin = 0;
    s->listener_id = m.listener_id;
    lt_handoff_counter(s, &m);
    s->pending = 0;
    s->accept_asked = 1;       /* a joined listener takes connections at once */
    s->next_listener = lt_listeners;
    lt_listeners = s;
    lt_progress();
    return 0;
}

/* With the lock held: the next established connection, or -errno.  The
 * daemon hands connections over with NEWCONN (listen_handoff.c).  Before
 * this process takes any, one ACCEPT request tells the daemon it accepts:
 * until then connections handed to a listener whose process never accepts
 * (a prefork master's) may move to a process of the port's that does, and
 * any such move (CONN_CLOSED, TAS_CTL_FL_MOVED) comes before the reply, so
 * what the queue holds after it is ours.  The reply also takes any
 * connection not handed over. */
#define TAKE_KERNEL 1      /* take_conn: try the kernel twin (listen_kernel.c) */

static int take_conn(struct lt_sock *s, struct tas_ctl_msg *m)
{
    int64_t deadline = lt_deadline(s->rcvtimeo_us);      /* SO_RCVTIMEO */
    if (!s->accept_asked) {
        s->accept_asked = 1;
        *m = (struct tas_ctl_msg){.type = TAS_CTL_ACCEPT, .listener_id = s->listener_id};
        int st = lt_request(m);
        if (st != -EAGAIN)
            return st;
    }
    for (;;) {
        lt_progress();
        if (s->listen_shut)             /* shut down meanwhile (fd_calls.c) */
            return -EINVAL;
        if (lt_handoff_pop(s, m))
            return 0;
        if (s->nonblock)
            return s->kernel_fd >= 0 ? TAKE_KERNEL : -EAGAIN;
        /* pending counts the queue, never zeroed by hand */
        struct pollfd twin = {.fd = s->kernel_fd, .events = POLLIN};
        while (s->pending == 0 && !s->listen_shut) {
            /* once the daemon is gone the accept fails (ENETDOWN), as a
             * listener without a twin does, instead of waiting on the twin */
            int k = s->kernel_fd >= 0 && !tas_app_lost(lt_app);
            int r = lt_wait_call(k ? &twin : NULL, (nfds_t)k, deadline);
            if (r < 0)
                return r;
            if (r > 0)
                return TAKE_KERNEL;
        }
    }
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    struct lt_sock *s = lt_sock_hold(fd);
    if (s == NULL)
        return REAL(accept4)(fd, addr, len, flags);
    if (s->kind != LT_LISTEN || s->listen_shut)
        return (int)lt_sock_done(s, fail(EINVAL));
    lt_lock();
    struct tas_ctl_msg m;
    int st = lt_listener_rejoin(s);
    while (st == 0 && (st = take_conn(s, &m)) == TAKE_KERNEL) {
        int k = lt_listen_kernel_accept(s, addr, len, flags);
        if (k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            lt_unlock();
            return (int)lt_sock_done(s, k);
        }
        st = s->nonblock ? -EAGAIN : 0;   /* another process took it: wait again */
    }
    struct lt_sock *c = st == 0 ? lt_sock_new() : NULL;
    int nfd = -1;
    if (c != NULL) {
        lt_conn_open(c, &m);
        c->nonblock = !!(flags & SOCK_NONBLOCK);
        c->family = s->family;
        c->linger_rst = s->linger_rst;     /* inherited from the listener, as on Linux */
        nfd = lt_fd_install(c, flags & SOCK_CLOEXEC);
        if (nfd < 0)
            lt_sock_unref(c);
        else
            lt_fill_addr(c, addr, len, c->remote_ip, c->remote_port);
    }
    lt_unlock();
    return (int)lt_sock_done(s, st < 0 ? fail(-st) : nfd);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return accept4(fd, addr, len, 0);
}
