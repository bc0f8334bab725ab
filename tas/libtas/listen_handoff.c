/*
 * Connections handed over with NEWCONN (listeners made with
 * TAS_CTL_FL_HANDOFF).  The daemon sends each connection whole with its
 * SYN-ACK; the fast path says when the final ACK came (an arx entry with
 * TAS_ARX_FL_ESTABLISHED), and from then on accept takes it from the
 * listener's queue here, with no request to the daemon, and counts it in
 * the listener's accept counter in the segment (the daemon's backlog holds
 * it until then).  The
 * slow path is thus off the way from the client's first data to the app.
 *
 * The NEWCONN comes as a control message when the slow path answered the
 * SYN, or as a TAS_ARX_NEWCONN entry in the notification queue when the
 * fast path did (include/tas/synfast.h).
 *
 * Whichever comes first: the fast path's word may be read before the
 * NEWCONN (lt_progress reads the control socket before applying entries
 * for flows it does not know), so a flow remembers it (est_early); and a
 * CONN_CLOSED may overtake a TAS_ARX_NEWCONN (closed_early).  A
 * connection the daemon reports closed before it was established is
 * dropped unseen; a listener closed with connections still queued resets
 * them, as Linux resets the ones in its accept queue.  accept marks the
 * connection it takes (TAS_ATX_FL_ACCEPTED): when the process exits or is
 * killed, the daemon resets the handed-over ones it never accepted.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "interpose.h"

struct lt_handed {
    struct tas_ctl_msg m;
    int ready;                 /* established: accept may take it */
    struct lt_handed *next;
};

static void mark_ready(struct lt_sock *s, struct lt_handed *h)
{
    h->ready = 1;
    s->pending++;
    s->in_seq++;
}

static void reset_unaccepted(uint32_t flow_id)
{
    struct tas_ctl_msg c = {.type = TAS_CTL_CLOSE,
                            .flags = TAS_CTL_FL_RESET | TAS_CTL_FL_NOREPLY,
                            .flow_id = flow_id};
    tas_app_send(lt_app, &c);
    lt_flow_forget(lt_flow_get(flow_id));
}

static struct lt_sock *listener_of(uint32_t listener_id)
{
    for (struct lt_sock *s = lt_listeners; s != NULL; s = s->next_listener)
        if (s->listener_id == listener_id)
            return s;
    return NULL;
}

/* The queue entry of a flow, and its listener (NULL if none). */
static struct lt_handed **find(uint32_t flow_id, struct lt_sock **owner)
{
    for (struct lt_sock *s = lt_listeners; s != NULL; s = s->next_listener)
        for (struct lt_handed **p = &s->handed_head; *p != NULL; p = &(*p)->next)
            if ((*p)->m.flow_id == flow_id) {
                *owner = s;
                return p;
            }
    return NULL;
}

static void unlink_entry(struct lt_sock *s, struct lt_handed **p)
{
    struct lt_handed *h = *p;
    *p = h->next;
    if (s->handed_tail == h) {
        s->handed_tail = NULL;
        for (struct lt_handed *t = s->handed_head; t != NULL; t = t->next)
            s->handed_tail = t;
    }
    free(h);
}

/* The id of a flow we closed, now reused: start afresh. */
static void fresh(struct lt_flow *f, uint32_t id)
{
    struct lt_flow *next = f->next;
    memset(f, 0, sizeof(*f));
    f->id = id;
    f->next = next;
}

void lt_handoff_established(uint32_t flow_id)
{
    struct lt_flow *f = lt_flow_get(flow_id);
    if (f->dead)
        return;                /* reset here already */
    struct lt_sock *s;
    struct lt_handed **p = find(flow_id, &s);
    if (p != NULL && !(*p)->ready)
        mark_ready(s, *p);
    else if (p == NULL)
        f->est_early = 1;
}

void lt_handoff_arrived(const struct tas_ctl_msg *m)
{
    if (m->flags & TAS_CTL_FL_ESTAB) {
        lt_handoff_established(m->flow_id);
        return;
    }
    struct lt_flow *f = lt_flow_get(m->flow_id);
    int est_early = f->est_early, closed_early = f->closed_early, moved = f->moved;
    if (f->dead)
        fresh(f, m->flow_id);
    f->est_early = f->closed_early = 0;
    if (closed_early) {        /* gone already: the daemon has forgotten it */
        lt_flow_forget(f);
        f->moved = moved;
        return;
    }
    f->handed = 1;             /* its notifications count from now on */
    struct lt_sock *s = listener_of(m->listener_id);
    if (s == NULL) {
        reset_unaccepted(m->flow_id);   /* its listener is closed here already */
        return;
    }
    struct lt_handed *h = malloc(sizeof(*h));
    if (h == NULL)
        abort();               /* as lt_flow_get: no way to refuse it */
    *h = (struct lt_handed){.m = *m};
    if (s->handed_tail != NULL)
        s->handed_tail->next = h;
    else
        s->handed_head = h;
    s->handed_tail = h;
    if (est_early)
        mark_ready(s, h);
}

void lt_handoff_fast(const struct tas_arx *e)
{
    if (e->rx_bump == TAS_CLAIM_LISTENER) {
        /* a flow this (forked) process claims: the claim's reply opens it,
         * its notifications count from now on */
        struct lt_flow *f = lt_flow_get(e->flow_id);
        if (f->dead)
            fresh(f, e->flow_id);
        f->handed = 1;
        return;
    }
    struct lt_sock *s = listener_of(e->rx_bump);
    struct tas_ctl_msg m = {
        .type = TAS_CTL_NEWCONN, .flags = TAS_CTL_FL_HANDOFF, .flow_id = e->flow_id,
        .listener_id = e->rx_bump,
        .local_ip = s != NULL ? s->conn_local_ip : 0,
        .remote_ip = (uint32_t)(e->opaque >> 32),
        .local_port = (uint16_t)e->opaque, .remote_port = (uint16_t)(e->opaque >> 16),
        .rx_off = e->rx_pos, .rx_size = s != NULL ? s->conn_rx_size : 0,
        .tx_off = e->tx_bump, .tx_size = s != NULL ? s->conn_tx_size : 0,
    };
    lt_handoff_arrived(&m);    /* no listener: reset, as for a control NEWCONN */
}

void lt_handoff_closed_early(uint32_t flow_id)
{
    lt_flow_get(flow_id)->closed_early = 1;
}

int lt_handoff_closed(uint32_t flow_id)
{
    struct lt_sock *s;
    struct lt_handed **p = find(flow_id, &s);
    if (p == NULL || (*p)->ready)
        return 0;              /* accepted or acceptable: the socket sees the reset */
    unlink_entry(s, p);
    lt_flow_forget(lt_flow_get(flow_id));
    return 1;
}

void lt_handoff_moved(uint32_t flow_id)
{
    struct lt_sock *s;
    struct lt_handed **p = find(flow_id, &s);
    struct lt_flow *open = lt_flow_get(flow_id);
    if (p == NULL && open->dead) {
        open->moved = 1;       /* closed here already, taken over by a child since */
        return;
    }
    if (p == NULL && open->opened) {
        /* accepted here, then taken over by a process we forked (its claim):
         * our socket's copy no longer carries it */
        open->moved = open->reset = 1;
        open->in_seq++;
        open->out_seq++;
        return;
    }
    if (p == NULL) {           /* its TAS_ARX_NEWCONN not applied yet */
        lt_handoff_closed_early(flow_id);
        lt_flow_get(flow_id)->moved = 1;
        return;
    }
    if ((*p)->ready && s->pending > 0)
        s->pending--;
    unlink_entry(s, p);
    struct lt_flow *f = lt_flow_get(flow_id);
    lt_flow_forget(f);
    f->moved = 1;              /* its data is the other process's now */
}

int lt_handoff_pop(struct lt_sock *s, struct tas_ctl_msg *out)
{
    struct lt_handed **p = &s->handed_head;
    while (*p != NULL && !(*p)->ready)
        p = &(*p)->next;
    if (*p == NULL)
        return 0;
    *out = (*p)->m;
    unlink_entry(s, p);
    if (s->pending > 0)
        s->pending--;
    if (s->accept_ctr != NULL)    /* the daemon's backlog reads it */
        __atomic_fetch_add(s->accept_ctr, 1, __ATOMIC_RELEASE);
    /* the daemon tells accepted connections from queued ones when we go */
    tas_app_post(lt_app, out->flow_id, 0, 0, TAS_ATX_FL_ACCEPTED);
    return 1;
}

void lt_handoff_reset_all(struct lt_sock *s)
{
    while (s->handed_head != NULL) {
        struct lt_handed *h = s->handed_head;
        s->handed_head = h->next;
        reset_unaccepted(h->m.flow_id);
        free(h);
    }
    s->handed_tail = NULL;
    s->pending = 0;
}

void lt_handoff_counter(struct lt_sock *s, const struct tas_ctl_msg *reply)
{
    uint64_t off = reply->rx_off;
    s->conn_local_ip = reply->local_ip;
    s->conn_rx_size = reply->rx_size;
    s->conn_tx_size = reply->tx_size;
    s->accept_ctr = NULL;
    if (off != 0 && off % sizeof(uint64_t) == 0 && off + sizeof(uint64_t) <= tas_app_size(lt_app))
        s->accept_ctr = (uint64_t *)(tas_app_base(lt_app) + off);
}

void lt_handoff_forget(struct lt_sock *s)
{
    /* A forked child: the queued connections are the parent's (the child's
     * copies of the entries just leak, as its copies of the flows do). */
    s->handed_head = s->handed_tail = NULL;
    s->pending = 0;
    s->accept_ctr = NULL;      /* the parent's segment: the rejoin gives ours */
}
