/*
 * The slow path's first look at the connections the fast path opened
 * (include/tas/synfast.h), in C (tas/fastpath/fp_syn_sweep.c).
 *
 * Under connection churn most such connections are over (handed over at the
 * SYN, established, closed both ways by a quiet close) before the slow path
 * ever looks at them.  Taking each over in Python (a Conn object, its
 * establish, close, TIME_WAIT and buffer recycling: about 10 us each) was
 * most of the slow path's CPU per connection.  The sweep collects the
 * fast path's records into a list of its own and, each call, closes here
 * the connections that are over: it removes the flow (after entering the
 * TIME_WAIT pair in the fast path's table when we closed first), puts the
 * buffers back into the listener's pool and counts them (also those the
 * peer reset, once their app closed them: the fast path took the RST, no
 * TIME_WAIT).  The slow path
 * hears only what it must note: per listener how many were established and
 * closed (its backlog), per connection only a TIME_WAIT pair, a pair reused,
 * or buffers the pool had no room for.  The others stay in the list and go
 * to the slow path (as struct tas_syn_pending) once a tick has seen them
 * still open, or at once when anything about them is unusual (data left
 * unread, the listener gone), or when the slow path asks for all
 * (TAS_SWEEP_ALL: a request or segment may name one of them).
 *
 * Daemon-internal, slow-path thread only (like fp_flow_idle.c).
 */
#ifndef TAS_SYN_SWEEP_H
#define TAS_SYN_SWEEP_H

#include <stdint.h>
#include "tas/synfast.h"

/* CDEF-BEGIN */
/* tas_syn_sweep.mode */
#define TAS_SWEEP_TICK 1          /* the tick's pass: hand over the open ones a
                                     previous tick pass already saw */
#define TAS_SWEEP_ALL 2           /* hand over every one still open */
#define TAS_SWEEP_TIME_WAIT 4     /* tcp.time_wait_ms > 0: a connection we
                                     closed first leaves a TIME_WAIT pair */

/* tas_syn_swept.flags */
#define TAS_SWEPT_TW 1            /* it left a TIME_WAIT pair (the fast path's table) */
#define TAS_SWEPT_TW_HELD 2       /* ... the table was full: held (tas_fp_syn_hold) */
#define TAS_SWEPT_TW_REUSED 4     /* it had taken over a TIME_WAIT pair */
#define TAS_SWEPT_RELEASE 8       /* its buffers go back to its app's allocator (the
                                     pool was full) */

#define TAS_SWEEP_PEERS 16

/* A connection the sweep closed that the slow path must note (flags != 0). */
struct tas_syn_swept {
    uint32_t listener_id;
    uint32_t peer_ip;             /* host byte order */
    uint16_t local_port, peer_port;
    uint32_t snd_nxt, rcv_nxt;    /* at the close (TIME_WAIT) */
    uint32_t rx_off, tx_off;      /* its buffers (TAS_SWEPT_RELEASE) */
    uint8_t peer_mac[6];
    uint16_t flags;               /* TAS_SWEPT_* */
};

/* A connection the slow path tracks from now on. */
struct tas_syn_pending {
    struct tas_syn_opened rec;
    double collected_at;          /* CLOCK_MONOTONIC seconds the sweep took the record */
};

/* Per listener (one entry per listener id met in the call). */
struct tas_syn_sweep_lst {
    uint32_t listener_id;
    uint32_t collected;           /* records taken from the ring */
    uint32_t closed;              /* established and closed here (its backlog's
                                     `handed`: the app accepted them) */
};

/* A peer of connections closed here (the slow path's ARP cache learns it). */
struct tas_syn_sweep_peer {
    uint32_t ip;
    uint8_t mac[6];
    uint16_t pad;
};

struct tas_syn_sweep {
    /* in */
    uint32_t mode;                /* TAS_SWEEP_* */
    uint32_t pool_cap;            /* recycle into a listener's pool up to this many */
    uint32_t conn_pool_cap;       /* ... and into a connector's */
    struct tas_syn_pending *open; /* the caller's arrays */
    uint32_t open_max;
    uint32_t done_max;
    struct tas_syn_swept *done;
    /* out */
    uint32_t nopen, ndone, nlst, npeers;
    uint32_t collected;           /* records taken from the ring */
    uint32_t closed;              /* connections closed here */
    uint32_t recycled;            /* ... whose buffers went back to the pool */
    uint32_t time_wait;           /* ... that left a TIME_WAIT pair */
    uint32_t tw_reused;           /* ... that had reused one */
    uint32_t reset;               /* ... reset by the peer (no FINs, no TIME_WAIT) */
    uint32_t pending;             /* still in the sweep's list after the call */
    uint32_t more;                /* 1: an output array filled up, call again */
    struct tas_syn_sweep_lst lst[TAS_SYN_MAX_LISTENERS];
    struct tas_syn_sweep_peer peers[TAS_SWEEP_PEERS];
};

/* Collect, close what is over, hand over what is due (see above). */
void tas_fp_syn_sweep(struct tas_fp *fp, struct tas_syn_sweep *s);
/* Connections in the sweep's list (opened here, not yet the slow path's). */
uint32_t tas_fp_syn_pending_count(struct tas_fp *fp);
/* CDEF-END */

#endif
