/* The flow table: flows by id, opened from CONN_OPENED/accept replies and
 * updated by notifications.  Below the engine (flow_state.c), which feeds it. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "interpose.h"
#include "tas/flow.h"

/* A flow id is the daemon's flow slot, below TAS_FLOW_MAX, and the daemon
 * hands slots out round the whole table: a dead flow stays here until its
 * id comes back, so after some churn every id has an entry.  One bucket
 * per id keeps every lookup one step (1,024 buckets meant chains of 64 and
 * a third of a short-connection server's CPU in this lookup).  Untouched
 * buckets cost no memory. */
#define FLOW_BUCKETS TAS_FLOW_MAX

static struct lt_flow *buckets[FLOW_BUCKETS];
static uint32_t buckets_used;          /* buckets below it may be set */

void lt_flows_forget_all(void)
{
    /* the parent's; the child's heap copy just leaks */
    memset(buckets, 0, buckets_used * sizeof(buckets[0]));
    buckets_used = 0;
}

/* Notifications can arrive before the accept that names the flow (like
 * tas/app.py's `early`), so a flow is created by whichever comes first. */
struct lt_flow *lt_flow_get(uint32_t id)
{
    uint32_t i = id % FLOW_BUCKETS;
    struct lt_flow **b = &buckets[i];
    for (struct lt_flow *f = *b; f != NULL; f = f->next)
        if (f->id == id)
            return f;
    struct lt_flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    f->id = id;
    f->next = *b;
    *b = f;
    if (i >= buckets_used)
        buckets_used = i + 1;
    return f;
}

void lt_flow_open(struct lt_flow *f, const struct tas_ctl_msg *m)
{
    if (f->dead) {             /* the id of a flow we closed, now reused */
        struct lt_flow *next = f->next;
        memset(f, 0, sizeof(*f));
        f->id = m->flow_id;
        f->next = next;
    }
    f->opened = 1;
    tas_rx_open(lt_app, &f->rx, f->id, 0, m->rx_off, m->rx_size);
    tas_tx_open(&f->tx, m->tx_off, m->tx_size);
}

/* Kept in the table, marked dead: the daemon still reports on it while the
 * close handshake runs (its data is then released unread).  Nothing waits
 * for that at exit: the daemon finishes closed connections of an app that
 * has gone (tas/slowpath/tcp.py app_gone). */
void lt_flow_forget(struct lt_flow *f)
{
    f->dead = 1;
}

void lt_flow_notify(struct lt_flow *f, const struct tas_arx *e)
{
    f->tx.free += e->tx_bump;
    if (e->flags & TAS_ARX_FL_RXFIN)
        f->rx_fin = 1;
    if ((e->flags & TAS_ARX_FL_RESET) && !f->reset)
        f->reset = f->fp_reset = 1;
    f->in_seq += e->rx_bump > 0 || (e->flags & (TAS_ARX_FL_RXFIN | TAS_ARX_FL_RESET));
    f->out_seq += e->tx_bump > 0 || (e->flags & TAS_ARX_FL_RESET);
    if (!f->dead)
        tas_rx_arrived(&f->rx, e->rx_bump);
    else if (e->rx_bump > 0 && !f->moved)   /* nobody will read it: release the window */
        tas_app_post(lt_app, f->id, e->rx_bump, 0, 0);
}
