/*
 * Per-flow fast-path state (dissertation table 3.1) and the calls the slow
 * path uses to install, inspect and steer flows.  The slow path reads and
 * writes this state directly through cffi (it lives in the daemon process);
 * mutable fields are changed under the flow's lock.
 */
#ifndef TAS_FLOW_H
#define TAS_FLOW_H

#include <stdint.h>

/* CDEF-BEGIN */
#define TAS_FLOW_MAX 65536

#define TAS_FLF_ACTIVE 1         /* slot in use */
#define TAS_FLF_TS 2             /* TCP timestamps negotiated */
#define TAS_FLF_ECN 4            /* ECN negotiated: send ECT, count ECE */
#define TAS_FLF_TXFIN 8          /* app closed: send FIN after the data */
#define TAS_FLF_TXFIN_SENT 16
#define TAS_FLF_TXFIN_ACKED 32
#define TAS_FLF_RXFIN 64         /* peer's FIN received in order */
#define TAS_FLF_CE_SEEN 128      /* echo ECE on the next ACK */
#define TAS_FLF_PROBE 256        /* send a window probe */
#define TAS_FLF_ACKNOW 512       /* send a pure ACK (timestamp refresh) */
#define TAS_FLF_FIN_EVER 1024    /* our FIN went out at least once */
#define TAS_FLF_SACK 2048        /* peer offered SACK: send blocks, read theirs */
#define TAS_FLF_SACK_RECOV 4096  /* resending the holes the peer's SACKs show */
#define TAS_FLF_RESET 8192       /* exact RST taken: no more data either way; the
                                    slow path removes the flow */
#define TAS_FLF_SYNRCVD 16384    /* installed with our SYN-ACK: the final ACK
                                    completes it here, in order with the data
                                    behind it; all else goes to the slow path */
#define TAS_FLF_ACK_DUE 32768    /* in-order data not yet ACKed: the ACK goes at
                                    the end of the RX burst (ACK coalescing) */
#define TAS_FLF_QUIET 1048576   /* (bit 20) the slow path polls this flow's open and close
                                    (its tick): the final ACK and the peer's FIN
                                    are not passed up (a connection handed over
                                    to the app at its SYN: the app hears directly) */
#define TAS_FLF_APP_CLOSED 2097152      /* (bit 21) TAS_ATX_FL_CLOSED came */
#define TAS_FLF_PEER_FIN_FIRST 4194304  /* (bit 22) RXFIN was set by then (no TIME_WAIT) */
#define TAS_FLF_RX_DISCARD 8388608      /* (bit 23) closed with received data unread, or
                                           new data came after the close: nobody will
                                           read it, so the slow path resets the
                                           connection (Linux: RST on close with unread
                                           data, and on data to a closed socket) */
#define TAS_FLF_APP_ACCEPTED 16777216   /* (bit 24) TAS_ATX_FL_ACCEPTED came */
#define TAS_FLF_SYNSENT 33554432        /* (bit 25) our SYN went (a connect the fast path
                                           opened, include/tas/synfast.h): the SYN-ACK
                                           completes it here; all else goes to the slow
                                           path */
#define TAS_FLF_UNTOLD 67108864         /* (bit 26) ... completed, but the app's queue had
                                           no room for TAS_ARX_OPENED: the slow path
                                           tells it (CONN_OPENED) */

struct tas_flow {
    /* identity: written by the slow path at install, then read-only */
    uint64_t opaque;             /* app's id for the flow, echoed in tas_arx */
    uint8_t *rx_base;            /* payload buffers (daemon mapping) */
    uint8_t *tx_base;
    uint32_t rx_size;
    uint32_t tx_size;
    uint32_t local_ip;           /* host byte order */
    uint32_t peer_ip;
    uint16_t local_port;
    uint16_t peer_port;
    uint8_t peer_mac[6];
    uint16_t ctx;                /* fast-path context index (app queues) */
    uint32_t app_id;
    uint16_t mss;
    uint8_t snd_wscale;          /* peer's window scale */
    uint8_t rcv_wscale;          /* ours */
    uint16_t queue;              /* fast-path queue whose TX work list carries it */

    /* mutable state, under lock */
    int32_t lock;
    uint32_t flags;
    uint32_t rx_next_seq;        /* next in-order byte expected (our ACK) */
    uint32_t rx_head;            /* buffer position of rx_next_seq */
    uint32_t rx_avail;           /* free bytes from rx_head on */
    uint32_t rx_ooo_start;       /* the one out-of-order interval (seq) */
    uint32_t rx_ooo_len;
    uint32_t ts_recent;          /* peer's last TSval, echoed */
    uint32_t tx_una;             /* oldest unacknowledged sequence number */
    uint32_t tx_head;            /* buffer position of tx_una */
    uint32_t tx_sent;            /* bytes sent, not acknowledged */
    uint32_t tx_sent_max;        /* bytes ever sent past tx_una (snd_max - tx_una):
                                    after a go-back, ACKs up to here are valid */
    uint32_t tx_avail;           /* bytes appended, not yet sent */
    uint32_t snd_wnd;            /* peer's receive window in bytes */
    uint32_t dupack_cnt;
    uint32_t tx_rate_kbps;       /* congestion control limit; 0 = window only */
    uint32_t tx_queued;          /* on its core's TX work list */
    uint64_t tx_next_tsc;        /* rate limit: earliest next transmission */
    uint32_t pend_rx_bump;       /* notifications deferred by a full RX queue */
    uint32_t pend_tx_bump;
    uint32_t pend_flags;
    uint32_t pend_rx_pos;
    uint32_t recover;            /* SACK recovery ends once tx_una passes this */
    uint32_t rexmit_hi;          /* SACK recovery: resent up to here */
    uint32_t challenge_us;       /* last challenge ACK (RFC 5961), 0: none yet */
    uint32_t rx_unacked_bytes;   /* in-order bytes taken since our last ACK */
    uint32_t rto_ts_us;          /* our TSval clock at the last timeout's go-back,
                                    0: none pending (spurious-timeout detection) */
    uint32_t rto_pending;        /* timeouts since the last ACK that advanced */

    /* feedback for the slow path (congestion control, timeouts) */
    uint64_t cnt_ackb;           /* bytes acknowledged */
    uint64_t cnt_ecnb;           /* bytes acknowledged with ECE */
    uint64_t cnt_txb;            /* bytes transmitted (incl. retransmits) */
    uint32_t cnt_frexmits;       /* fast retransmits */
    uint32_t cnt_spurious_rto;   /* timeouts the next ACK showed were spurious (all
                                    those since the previous advancing ACK):
                                    it echoed a timestamp from before the
                                    retransmission (RFC 3522, as Linux undoes) */
    uint32_t rtt_est_us;         /* smoothed RTT from timestamps */
    uint32_t tx_progress_us;     /* fast-path clock (tas_fp_ts_now) of the last
                                    progress: tx_una advanced, or a flight left
                                    a flow with nothing outstanding.  The slow
                                    path times retransmissions from it, not from
                                    when its own (possibly late) tick saw it. */
};

struct tas_flow_init {
    uint64_t opaque;
    uint8_t *rx_base;
    uint8_t *tx_base;
    uint32_t rx_size;
    uint32_t tx_size;
    uint32_t peer_ip;
    uint16_t local_port;
    uint16_t peer_port;
    uint8_t peer_mac[6];
    uint16_t ctx;
    uint32_t app_id;
    uint16_t mss;
    uint8_t snd_wscale;
    uint8_t rcv_wscale;
    uint32_t flags;              /* TAS_FLF_TS / TAS_FLF_ECN / TAS_FLF_SACK */
    uint32_t rx_next_seq;
    uint32_t tx_next_seq;
    uint32_t snd_wnd;
    uint32_t ts_recent;
    uint32_t tx_rate_kbps;
};

struct tas_fp;

/* Install a flow (returns its id, or -1 if the table is full or the 4-tuple
 * exists); remove it (its packets then go to the slow path). */
int tas_fp_flow_add(struct tas_fp *fp, const struct tas_flow_init *init);
void tas_fp_flow_remove(struct tas_fp *fp, uint32_t flow_id);
struct tas_flow *tas_fp_flow(struct tas_fp *fp, uint32_t flow_id);
int tas_fp_flow_lookup(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                       uint16_t peer_port);
uint32_t tas_fp_flow_count(struct tas_fp *fp);

/* Move an established connection its app never accepted to another app's
 * listener (tas/fastpath/fp_flow_move.c): a prefork master's listener had
 * it before any worker took connections.  The RX data already taken is
 * copied to the new buffers, the new app gets a TAS_ARX_NEWCONN and then
 * the data and TAS_ARX_FL_ESTABLISHED, and the 4-tuple's packets go to the
 * new flow from the same instant the old one stops taking them.  The old
 * buffers are the caller's to free after tas_fp_quiesce. */
struct tas_flow_move {
    uint8_t *rx_base;            /* the new app's buffers (daemon mapping) */
    uint8_t *tx_base;
    uint32_t rx_off, tx_off;     /* ... and their offsets in its segment */
    uint16_t ctx;
    uint32_t app_id;
    uint32_t listener_id;        /* the new app's listener (its NEWCONN names it) */
    uint32_t accepted;           /* 1: the app accepted it already (a forked child's
                                    claim, TAS_CTL_CLAIM): it may move all the same */
};
/* The new flow's id; -EBUSY: not movable (handshake not finished, closing,
 * reset, data sent or out of order); -ENOSPC: no flow slot, or the new
 * app's notification queue is full (try again later). */
int tas_fp_flow_move(struct tas_fp *fp, uint32_t flow_id, const struct tas_flow_move *to);

/* Slow-path commands: go back to tx_una and resend (retransmission
 * timeout); send a window probe; set the congestion-control rate. */
void tas_fp_flow_retransmit(struct tas_fp *fp, uint32_t flow_id);
void tas_fp_flow_probe(struct tas_fp *fp, uint32_t flow_id);
/* Send an ACK carrying a fresh timestamp: the TS clock ticks in us and
 * wraps in 71 min, so a flow idle for over half of that would fail the
 * peer's PAWS check; the slow path refreshes idle flows well before. */
void tas_fp_flow_ack(struct tas_fp *fp, uint32_t flow_id);
/* Close the flow for the app, as its close() would (TAS_ATX_FL_TXFIN |
 * TAS_ATX_FL_CLOSED): FIN after the data already queued.  For the open
 * connections of an app that exited without closing them (killed). */
void tas_fp_flow_close(struct tas_fp *fp, uint32_t flow_id);
/* The app closed the flow (caller holds its lock): TAS_FLF_APP_CLOSED, and
 * TAS_FLF_PEER_FIN_FIRST / TAS_FLF_RX_DISCARD as the flow stands now. */
void tas_fp_flow_mark_closed(struct tas_flow *f);
void tas_fp_flow_set_rate(struct tas_fp *fp, uint32_t flow_id, uint32_t kbps);

/* Idle flows (tas/fastpath/fp_flow_idle.c): the slow path's tick visits
 * only flows that may need it.  It snapshots a flow before it looks at it
 * (tas_fp_flow_snap: flags, data queued and in flight, ACK and RX
 * progress, the congestion-control feedback) and parks the flow when it
 * found it idle; each tick tas_fp_flows_woken returns (up to max) parked
 * flows that differ from their snapshot or have data queued or in flight,
 * unparked.  Removing or moving a flow unparks it.  Slow-path thread only. */
void tas_fp_flow_snap(struct tas_fp *fp, uint32_t flow_id);
int tas_fp_flow_park(struct tas_fp *fp, uint32_t flow_id);
void tas_fp_flow_unpark(struct tas_fp *fp, uint32_t flow_id);
uint32_t tas_fp_flows_woken(struct tas_fp *fp, uint32_t *out, uint32_t max);
uint32_t tas_fp_parked_count(struct tas_fp *fp);
void tas_fp_flow_lock(struct tas_flow *f);
void tas_fp_flow_unlock(struct tas_flow *f);

/* Application contexts: queues in the app's segment (struct tas_ctxq_hdr,
 * zeroed by the caller) and the daemon's end of the app's wake-up
 * socketpair (the fast path sends to it with MSG_DONTWAIT). */
int tas_fp_ctx_add(struct tas_fp *fp, uint32_t app_id, void *rxq, void *txq,
                   uint32_t *app_sleeping, int wake_sock);
void tas_fp_ctx_remove(struct tas_fp *fp, uint16_t ctx);
/* Wait until every fast-path core has finished the loop iteration it was in
 * (after removing a context, before unmapping its memory).  Reads only the
 * daemon's own memory. */
void tas_fp_quiesce(struct tas_fp *fp);
/* The end of core `core`'s wake-up socket that apps send to. */
int tas_fp_core_wake_fd(struct tas_fp *fp, uint16_t core);
uint16_t tas_fp_ctx_queue(struct tas_fp *fp, uint16_t ctx);
/* A context whose app wrote an impossible queue index is "bad": the fast
 * path no longer touches it and bumps an event count the slow path watches
 * (then detaches the app). */
int tas_fp_ctx_bad(struct tas_fp *fp, uint16_t ctx);
uint32_t tas_fp_bad_ctx_events(struct tas_fp *fp);
/* Retry deferred notifications (full RX queues); called on slow-path ticks. */
void tas_fp_flush_notifications(struct tas_fp *fp);
/* CDEF-END */

#endif
