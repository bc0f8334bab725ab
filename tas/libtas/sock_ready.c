/* Readiness of a TAS socket for poll/epoll (POLLIN/POLLOUT/POLLHUP/POLLERR). */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "interpose.h"

short lt_ready(struct lt_sock *s)
{
    short r = s->so_error ? POLLERR : 0;
    if (s->kind == LT_LISTEN && s->listen_shut)
        return (short)(r | POLLHUP);   /* Linux's closed socket */
    if (s->kind == LT_LISTEN) {
        /* A worker's inherited listener joins when first waited on. */
        if (s->rejoin && lt_listener_rejoin(s) != 0)
            return (short)(r | POLLERR);
        return (short)(r | (s->pending ? POLLIN | POLLRDNORM : 0));
    }
    /* The daemon is gone: a connection can only fail (ENETDOWN), as a
     * reset one is reported, so an event loop reads, learns and closes it
     * instead of waiting forever. */
    if ((s->kind == LT_CONNECTING || s->kind == LT_CONN) && lt_daemon_lost())
        return (short)(r | POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM | POLLERR | POLLHUP);
    if (s->kind == LT_CONNECTING)
        return r;
    if (s->claim_flow != 0)
        lt_claim(s);           /* inherited over fork: its first use */
    if (s->kind == LT_NEW)     /* as Linux reports a closed TCP socket */
        return (short)(r | POLLOUT | POLLWRNORM | POLLHUP |
                       (s->hup ? POLLIN | POLLRDNORM | POLLRDHUP : 0));
    struct lt_flow *f = s->flow;
    if (tas_rx_ready(&f->rx) || f->rx_fin || f->reset || s->shut_rd)
        r |= POLLIN | POLLRDNORM;
    /* As Linux's tcp_poll: our SHUT_RD is a receive shutdown as the peer's
     * FIN is (POLLRDHUP; with SHUT_WR, POLLHUP), and a socket shut for
     * writing is writable (a write fails at once with EPIPE) */
    if (f->rx_fin || s->shut_rd)
        r |= POLLRDHUP;
    if (f->tx.free || f->reset || s->shut_wr)
        r |= POLLOUT | POLLWRNORM;
    if (f->reset)
        r |= POLLERR | POLLHUP;
    else if ((f->rx_fin || s->shut_rd) && s->shut_wr)
        r |= POLLHUP;
    return r;
}
