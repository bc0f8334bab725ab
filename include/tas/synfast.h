/*
 * SYNs answered by the fast path (tas/fastpath/fp_tcp_syn.c).  The slow path
 * registers every listener here and, for hand-over listeners
 * (TAS_CTL_FL_HANDOFF), provisions a small pool of flow buffers ahead (from
 * the listener's app segment, charged to its uid).  A SYN for such a
 * listener is then answered by the fast path alone: it takes a pool entry
 * and a flow slot, installs the flow (SYN_RCVD, quiet), tells the app with a
 * TAS_ARX_NEWCONN entry in its notification queue, sends the SYN-ACK with
 * the options the slow path would send, and queues a struct tas_syn_opened
 * for the slow path, whose sweep (include/tas/syn_sweep.h) collects it on
 * its next wake-up: it closes the connection in C if it is over by then,
 * else the slow path's timers take it (SYN-ACK retransmission, close,
 * TIME_WAIT); the pool is refilled.  Anything unusual goes to the slow path as before, counted by
 * reason (syn_fallback_<reason> on the daemon's `tassyn` stats page, which
 * `tasctl stats` shows).  Not an application layout: no version to bump
 * (the app sees TAS_ARX_NEWCONN, include/tas/shm.h, which has one).
 *
 * Daemon-internal: read by the fast path and, through cffi, by the slow
 * path (no application maps it).
 */
#ifndef TAS_SYNFAST_H
#define TAS_SYNFAST_H

#include <stdint.h>
#include "kb/stats.h"

/* CDEF-BEGIN */
#define TAS_SYN_MAX_LISTENERS 256
#define TAS_SYN_POOL_MAX 256
#define TAS_SYN_HELD_SLOTS 4096   /* power of two */

/* Why a SYN for a registered listener went to the slow path after all. */
enum tas_syn_fallback {
    TAS_SYN_FB_NOT_HANDOFF = 0,   /* the listener picked is not a hand-over one */
    TAS_SYN_FB_POOL_EMPTY = 1,    /* no buffers provisioned (yet) */
    TAS_SYN_FB_BACKLOG = 2,       /* the listener's backlog is full */
    TAS_SYN_FB_ODD = 3,           /* IP options, payload, flags besides SYN/ECE/CWR,
                                     malformed TCP options */
    TAS_SYN_FB_NO_TAKER = 4,      /* none of the port's listeners takes it (closing) */
    TAS_SYN_FB_HELD = 5,          /* the slow path keeps the 4-tuple (a reset
                                     connection the app has not closed; TIME_WAIT
                                     the SYN may not reuse) */
    TAS_SYN_FB_QUEUE_FULL = 6,    /* the app's notification queue is full */
    TAS_SYN_FB_FLOW_TABLE = 7,    /* no free flow slot */
    TAS_SYN_FB_N = 8
};

/* Why a connect (TAS_ATX_CONNECT) went to the slow path after all. */
enum tas_conn_fallback {
    TAS_CONN_FB_NO_CONNECTOR = 0, /* the app has none (yet: its first connect goes
                                     the slow way, which provisions one) */
    TAS_CONN_FB_POOL_EMPTY = 1,   /* no buffers provisioned */
    TAS_CONN_FB_NO_MAC = 2,       /* the peer's MAC is not in the neighbour table */
    TAS_CONN_FB_NO_PORT = 3,      /* no free 4-tuple in a few tries */
    TAS_CONN_FB_FLOW_TABLE = 4,   /* no free flow slot */
    TAS_CONN_FB_ADDR = 5,         /* our own address, address or port 0 */
    TAS_CONN_FB_N = 6
};

/* A connect the fast path leaves to the slow path (it answers the app with
 * a CONN_OPENED, as for a TAS_CTL_CONNECT): from a ring, tas_fp_conn_slow. */
struct tas_conn_slow {
    uint32_t app_id;
    uint16_t ctx;                 /* the fast-path context it came from */
    uint16_t why;                 /* enum tas_conn_fallback */
    uint32_t req_id;
    uint32_t peer_ip;             /* host byte order */
    uint16_t peer_port;
    uint16_t pad;
};

/* What a SYN or SYN-ACK offers and a flow gets, from the daemon's
 * configuration. */
struct tas_syn_conf {
    uint16_t mss;                 /* advertised (tcp.mss) */
    uint16_t syn_window;          /* a SYN's or SYN-ACK's window: min(rx_buf, 65535) */
    uint8_t rcv_wscale;           /* offered (to a SYN: when the peer offers one) */
    uint8_t ecn;                  /* tcp.ecn */
    uint8_t tw_reuse;             /* tcp.time_wait_reuse: a connect may take a pair
                                     in TIME_WAIT for a second or more */
    uint8_t pad;
    uint32_t rx_size, tx_size;    /* flow buffer sizes */
    uint16_t port_lo, port_hi;    /* ephemeral ports of connects: lo..hi */
};

/* One provisioned flow's buffers (segment offsets and daemon mappings). */
struct tas_syn_buf {
    uint8_t *rx_base;
    uint8_t *tx_base;
    uint32_t rx_off;
    uint32_t tx_off;
};

#define TAS_SYN_OPENED_TW_REUSED 1   /* it took over a TIME_WAIT pair */
#define TAS_SYN_OPENED_ACTIVE 2      /* our connect: listener_id is the app's
                                        connector, the SYN went (irs: 0) */

/* A connection the fast path opened, for the slow path (44 bytes). */
struct tas_syn_opened {
    uint32_t flow_id;
    uint32_t listener_id;
    uint32_t iss;                 /* our initial sequence number */
    uint32_t irs;                 /* the peer's */
    uint32_t rx_off, tx_off;      /* the pool entry it took */
    uint32_t peer_ip;             /* host byte order */
    uint16_t local_port, peer_port;
    uint8_t peer_mac[6];
    uint16_t flags;               /* TAS_SYN_OPENED_* */
    uint32_t req_id;              /* TAS_SYN_OPENED_ACTIVE: the app's connect */
};

struct tas_fp;

void tas_fp_syn_configure(struct tas_fp *fp, const struct tas_syn_conf *conf);
/* The SYN counters (syn_fast, syn_fallback_<reason>, syn_kicks) go on this
 * page; before tas_fp_start. */
void tas_fp_syn_stats(struct tas_fp *fp, struct kb_stats_page *page);
/* Register a listener: returns its slot, or -1 if the table is full.
 * accept_ctr: a hand-over listener's accept counter (in its app's segment:
 * only that app's backlog can suffer from what it writes there), else NULL. */
int tas_fp_listener_add(struct tas_fp *fp, uint32_t listener_id, uint16_t port, uint16_t ctx,
                        uint32_t app_id, int handoff, uint32_t backlog,
                        const uint64_t *accept_ctr);
/* The listener asked to accept: it takes connections from now on.  Until
 * one of the port's listeners does, they go to the primary one (the first
 * made, as in the slow path: a prefork master's before its workers join). */
void tas_fp_listener_accepting(struct tas_fp *fp, int slot);
void tas_fp_listener_primary(struct tas_fp *fp, int slot);
/* After this returns no core opens connections on the slot; the caller then
 * collects the tas_syn_opened records and takes the pool back. */
void tas_fp_listener_remove(struct tas_fp *fp, int slot);
/* The pool: push 0 (or -1 when full); pop 1 with *out set (0 when empty). */
int tas_fp_listener_pool_push(struct tas_fp *fp, int slot, const struct tas_syn_buf *b);
int tas_fp_listener_pool_pop(struct tas_fp *fp, int slot, struct tas_syn_buf *out);
uint32_t tas_fp_listener_pool_count(struct tas_fp *fp, int slot);
/* Backlog accounting of a hand-over listener: connections opened on it
 * (here or by the slow path) and those gone before they were acceptable;
 * with the app's accept counter, what is waiting is opened - gone - accepted. */
void tas_fp_listener_opened(struct tas_fp *fp, int slot);
void tas_fp_listener_gone(struct tas_fp *fp, int slot);
/* Connects in the fast path: an app's connector is a listener slot with no
 * port, whose pool provisions the app's outgoing connections; every
 * context of the app names it (slot -1: none, the app's connects go the
 * slow way).  A connect takes a pool entry, a free ephemeral port (not a
 * flow's, a TIME_WAIT pair's, a held one's or a listener's), installs the
 * flow (TAS_FLF_SYNSENT, quiet) and sends the SYN; the SYN-ACK completes it
 * in the fast path, which tells the app (TAS_ARX_OPENED).  The record
 * (TAS_SYN_OPENED_ACTIVE) goes to the sweep like a passive one's: if the
 * SYN-ACK is late, the slow path's timers take the connection (SYN
 * retransmission, timeout).  Removing: tas_fp_listener_remove. */
int tas_fp_connector_add(struct tas_fp *fp, uint32_t listener_id, uint32_t app_id);
void tas_fp_ctx_connector(struct tas_fp *fp, uint16_t ctx, int slot);
/* The connect counters (conn_fast, conn_fallback_<reason>, conn_untold) go
 * on this page. */
void tas_fp_conn_stats(struct tas_fp *fp, struct kb_stats_page *page);
/* Up to max connects left to the slow path; how many. */
unsigned tas_fp_conn_slow(struct tas_fp *fp, struct tas_conn_slow *out, unsigned max);
/* The neighbour table connects take the peer's MAC from (the slow path's
 * ARP cache writes it): set, or forget. */
void tas_fp_neigh_set(struct tas_fp *fp, uint32_t ip, const uint8_t *mac);
void tas_fp_neigh_del(struct tas_fp *fp, uint32_t ip);
/* (The connections the fast path opened: the slow path's sweep collects
 * their records, include/tas/syn_sweep.h.) */
/* 4-tuples whose SYNs the slow path must see (delta +1 / -1): counted in a
 * small hashed table, so a collision only sends a SYN the slow way. */
void tas_fp_syn_hold(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                     uint16_t peer_port, int delta);
/* Port pairs in TIME_WAIT, with the next sequence number the old
 * connection expected: a SYN above it opens a new connection at once (RFC
 * 6191, as the slow path decides), in the fast path too.  add: 0, or -1
 * when the table is full (then hold the pair: tas_fp_syn_hold). */
int tas_fp_tw_add(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                  uint16_t peer_port, uint32_t rcv_nxt);
void tas_fp_tw_del(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                   uint16_t peer_port);
/* CDEF-END */

#endif
