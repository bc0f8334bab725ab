/* A socket becomes a connection: accept's reply or a connect's CONN_OPENED
 * (lt_connect_done, called by the engine), and the table of connects in
 * flight it completes.  Below the engine and sock_connect.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "interpose.h"

/* Connects in flight, by req_id.  s is NULL once the socket was closed: the
 * connection, if it opens, is then reset (what closing a SYN_SENT socket
 * amounts to on Linux). */
struct lt_pending_connect {
    uint32_t req_id;
    struct lt_sock *s;
    struct lt_pending_connect *next;
};
static struct lt_pending_connect *pending;

void lt_conn_open(struct lt_sock *s, const struct tas_ctl_msg *m)
{
    s->kind = LT_CONN;
    s->flow = lt_flow_get(m->flow_id);
    lt_flow_open(s->flow, m);
    s->local_ip = m->local_ip;
    s->local_port = m->local_port;
    s->remote_ip = m->remote_ip;
    s->remote_port = m->remote_port;
}

struct lt_pending_connect *lt_connect_pending_new(void)
{
    return malloc(sizeof(struct lt_pending_connect));
}

void lt_connect_pending_add(struct lt_pending_connect *p, uint32_t req_id, struct lt_sock *s)
{
    *p = (struct lt_pending_connect){.req_id = req_id, .s = s, .next = pending};
    pending = p;
}

static void abandon(const struct tas_ctl_msg *m)
{
    struct lt_flow *f = lt_flow_get(m->flow_id);
    lt_flow_open(f, m);
    f->reset = 1;
    lt_flow_forget(f);
    /* Fire and forget: lt_progress (our caller) must not wait for replies,
     * and the STATUS reply is ignored when it arrives. */
    struct tas_ctl_msg c = {.type = TAS_CTL_CLOSE, .flags = TAS_CTL_FL_RESET,
                            .flow_id = m->flow_id};
    tas_app_send(lt_app, &c);
}

void lt_connect_done(const struct tas_ctl_msg *m)
{
    struct lt_pending_connect **pp = &pending;
    while (*pp != NULL && (*pp)->req_id != m->req_id)
        pp = &(*pp)->next;
    struct lt_pending_connect *p = *pp;
    if (p == NULL)
        return;                /* a blocking request's reply: not ours */
    *pp = p->next;
    struct lt_sock *s = p->s;
    free(p);
    if (s == NULL) {
        if (m->status == 0)
            abandon(m);
        return;
    }
    s->connect_unreported = 1;
    s->in_seq++;               /* a failed one is readable too (POLLHUP) */
    s->out_seq++;
    if (m->status == 0) {
        lt_conn_open(s, m);
    } else {
        s->kind = LT_NEW;
        s->so_error = -m->status;
        s->hup = 1;
    }
}

void lt_connect_opened(const struct tas_arx *e)
{
    struct tas_ctl_msg m = {
        .type = TAS_CTL_CONN_OPENED, .req_id = e->rx_bump, .flow_id = e->flow_id,
        .local_ip = tas_app_ip(lt_app),
        .remote_ip = (uint32_t)(e->opaque >> 32),
        .local_port = (uint16_t)e->opaque, .remote_port = (uint16_t)(e->opaque >> 16),
        .rx_off = e->rx_pos, .tx_off = e->tx_bump,
    };
    tas_app_flow_sizes(lt_app, &m.rx_size, &m.tx_size);
    lt_connect_done(&m);
}

void lt_connect_orphan(struct lt_sock *s)
{
    for (struct lt_pending_connect *p = pending; p != NULL; p = p->next)
        if (p->s == s)
            p->s = NULL;
}
