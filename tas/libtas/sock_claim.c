/*
 * A forked child's first use of an inherited connection (fork_child.c
 * leaves it unconnected, with the parent's flow id): the child attaches as
 * its own app and asks the daemon for the flow (TAS_CTL_CLAIM).  The daemon
 * moves it to the child's context with the bytes not read yet, so a server
 * that accepts and then forks a process per connection (PostgreSQL,
 * ForkingTCPServer) serves it from the child.  While data the parent wrote
 * is still in flight the daemon answers EAGAIN: ask again shortly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "interpose.h"

#define CLAIM_TRIES 5000        /* 1 ms apart */

int lt_claim(struct lt_sock *s)
{
    if (s->claim_flow == 0)
        return 0;
    uint32_t parent_flow = s->claim_flow - 1;
    s->claim_flow = 0;         /* one attempt per socket; failed, it stays unconnected */
    int st = -ENOTCONN;
    if (lt_attach()) {
        for (int i = 0; i < CLAIM_TRIES; i++) {
            struct tas_ctl_msg m = {.type = TAS_CTL_CLAIM, .flow_id = parent_flow};
            st = lt_request(&m);
            if (st == 0) {
                lt_conn_open(s, &m);
                tas_app_count(lt_app, TAS_SHIM_CLAIMS, 1);
                lt_claim_pending_done();   /* (only now: the marker holds the FIN) */
                return 0;
            }
            if (st != -EAGAIN)
                break;
            struct timespec ms = {.tv_nsec = 1000000};
            nanosleep(&ms, NULL);
        }
    }
    lt_claim_pending_done();
    tas_app_count(lt_app, TAS_SHIM_CLAIMS_FAILED, 1);
    fprintf(stderr, "libtas: could not take over a connection inherited over fork "
            "(flow %u): %s\n", parent_flow, strerror(-st));
    return st;
}
