/* The last reference to a TAS socket: the daemon hears of the close (listener
 * or connection), a pending connect is orphaned, the flow is forgotten. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "interpose.h"

static void unlink_listener(struct lt_sock *s)
{
    for (struct lt_sock **p = &lt_listeners; *p != NULL; p = &(*p)->next_listener) {
        if (*p == s) {
            *p = s->next_listener;
            return;
        }
    }
}

/* Children forked while the connection was open may hold it (a server that
 * forks a process per connection closes its copy at once): the daemon sends
 * the FIN once they are gone, unless one of them takes it over.  Our copy's
 * data is theirs meanwhile: the flow stays in the table as moved, so what
 * arrives is not released here. */
static void close_forked(struct lt_sock *s)
{
    struct tas_ctl_msg m = {.type = TAS_CTL_CLOSE,
                            .flags = TAS_CTL_FL_FORKED | TAS_CTL_FL_NOREPLY,
                            .flow_id = s->flow->id,
                            .opaque = (uint64_t)(uint32_t)s->fork_pids[1] << 32 |
                                      (uint32_t)s->fork_pids[0],
                            .backlog = (uint32_t)s->fork_pids[2],
                            .listener_id = (uint32_t)s->fork_pids[3]};
    tas_app_send(lt_app, &m);
    tas_app_count(lt_app, TAS_SHIM_CLOSES_FORKED, 1);
    lt_flow_forget(s->flow);
    s->flow->moved = 1;
}

static void listen_close(struct lt_sock *s)
{
    unlink_listener(s);
    lt_handoff_reset_all(s);
    struct tas_ctl_msg m = {.type = TAS_CTL_LISTEN_CLOSE, .listener_id = s->listener_id};
    lt_request(&m);
}

void lt_listen_shutdown(struct lt_sock *s)
{
    if (s->listen_shut)
        return;
    if (!s->rejoin)            /* (an inherited one never joined: nothing to close) */
        listen_close(s);
    s->listen_shut = 1;
    s->pending = 0;
    s->in_seq++;
    if (s->kernel_fd >= 0)
        REAL(shutdown)(s->kernel_fd, SHUT_RDWR);
}

void lt_sock_unref(struct lt_sock *s)
{
    if (--s->refs > 0)
        return;
    struct tas_ctl_msg m = {0};
    if (s->kind == LT_LISTEN && s->kernel_fd >= 0)
        REAL(close)(s->kernel_fd);      /* its kernel twin (listen_kernel.c) */
    if (s->claim_flow != 0)
        lt_claim_pending_done();        /* inherited, closed unused: ours no more */
    if (s->kind == LT_LISTEN && (s->rejoin || s->listen_shut)) {
        /* inherited, never used here: the daemon knows nothing of it; or
         * shut down, and closed then */
    } else if (s->kind == LT_LISTEN) {
        listen_close(s);
    } else if (s->kind == LT_CONNECTING) {
        lt_connect_orphan(s);
    } else if (s->kind == LT_CONN && s->flow->moved) {
        /* taken over by a process forked from ours: not ours to close */
        lt_flow_forget(s->flow);
    } else if (s->kind == LT_CONN) {
        struct lt_flow *f = s->flow;
        tas_rx_close(lt_app, &f->rx);  /* nothing may depend on the ring after */
        /* reset in the fast path only: the daemon has not heard, it is
         * closed as an open one is (no FIN, and no RST after the peer's) */
        int open = !f->reset || f->fp_reset;
        if (open && !s->linger_rst && s->fork_pids[0] != 0) {
            close_forked(s);
            free(s);
            return;
        }
        if ((open && !s->linger_rst) || (f->fp_reset && s->fork_pids[0] == 0)) {
            /* A plain close goes with the FIN through the context queue: no
             * message, no wake-up of the daemon (its tick reads the flow).
             * So does the close of one the peer reset in the fast path
             * (no FIN, no RST: the sweep or the tick finishes it). */
            tas_app_post(lt_app, f->id, 0, 0,
                         (s->shut_wr || f->reset ? 0 : TAS_ATX_FL_TXFIN) | TAS_ATX_FL_CLOSED);
            f->quiet_closed = 1;
            lt_flow_forget(f);
            free(s);
            return;
        }
        m.type = TAS_CTL_CLOSE;
        /* SO_LINGER with a zero timeout: abort with a RST, unsent data is
         * dropped (Linux's behaviour, and what its users ask for).  One way:
         * the answer could only be 0, close does not wait for the daemon. */
        m.flags = (s->linger_rst ? TAS_CTL_FL_RESET : 0) | TAS_CTL_FL_NOREPLY;
        m.flow_id = f->id;
        tas_app_send(lt_app, &m);
        lt_flow_forget(f);
    }
    free(s);
}

ssize_t lt_sock_done(struct lt_sock *s, ssize_t r)
{
    int e = errno;
    lt_lock();
    lt_sock_unref(s);
    lt_unlock();
    errno = e;
    return r;
}
