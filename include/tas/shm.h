/*
 * Memory shared between the TAS daemon and one application (architecture
 * contract 7: defined once, read by C and by cffi, version checked on attach).
 *
 * Each application gets its own segment.  With buffers.backing = "shm" it is
 * a memfd the daemon passes over the registration socket, so no other process
 * can map it.  With "nvm" it is a slice of the Strata pool's reference area
 * (include/tas/arena.h): the daemon passes the pool's fd and the slice's
 * offset in it, so Strata can log received bytes by reference; every app then
 * holds the whole pool's fd (weaker isolation than a memfd).  The segment holds
 * a header, the application's context queues and its per-flow RX/TX circular
 * payload buffers.  Context queues (struct tas_ctxq_hdr) hold fixed-size entries:
 *   RX queue (fast path -> app): struct tas_arx, "flow F: N new bytes at pos
 *     P, M bytes of TX acknowledged, peer sent FIN".
 *   TX queue (app -> fast path): struct tas_atx, "flow F: I consumed N bytes
 *     (window may open), appended M bytes, closed my side".
 * Connection control (listen/connect/accept/close) goes to the slow path as
 * struct tas_ctl_msg over the registration socket.
 */
#ifndef TAS_SHM_H
#define TAS_SHM_H

#include <stdint.h>

/* CDEF-BEGIN */
#define TAS_SHM_MAGIC 0x53415453
/* 3: queue geometry private to the daemon; 4: also NVM pool slices (seg_off);
 * 5: connections handed over at the SYN (TAS_CTL_FL_HANDOFF, the accept
 * counter), close as a flag on the FIN (TAS_ATX_FL_CLOSED); 6: the fast path
 * hands connections over itself (TAS_ARX_NEWCONN; the LISTEN reply carries
 * the flow buffer sizes and the local address); 7: a connection handed over
 * but not accepted may move to another process (CONN_CLOSED with
 * TAS_CTL_FL_MOVED), so a listener's first accept asks the daemon first;
 * 8: the info page says which CPU each fast-path core runs on and whether
 * apps should run on their core's CPU (pin_apps);
 * 9: the header counts the control messages the daemon sent (ctl_sent);
 * 10: accept marks a handed-over connection (TAS_ATX_FL_ACCEPTED), so one
 * the app never accepted is reset when its process goes;
 * 12: a forked child takes over an inherited connection (TAS_CTL_CLAIM), and
 * a parent's close of a connection its children may hold waits for them
 * (TAS_CTL_FL_FORKED);
 * 13: the fast path tells the app of the peer's reset of a quiet connection
 * (TAS_ARX_FL_RESET) instead of the daemon's CONN_CLOSED: an app that
 * ignored the flag would wait on that connection for ever;
 * 14: connect goes to the fast path first (TAS_ATX_CONNECT), which answers
 * with TAS_ARX_OPENED or TAS_ARX_CONNECT_SLOW; the REGISTER reply carries
 * the flow buffer sizes */
#define TAS_SHM_VERSION 14
#define TAS_MAX_CTX 16
#define TAS_CTXQ_ENTRIES 4096    /* a power of two; never read from shared memory */

struct tas_seg_hdr {
    uint32_t magic;
    uint32_t version;
    uint64_t seg_size;
    uint32_t app_id;
    uint32_t nctx;
    uint64_t ctx_off[16];        /* offset of each context's struct tas_ctx_shm */
    /* Control messages the daemon sent on the app's socket, counted after
     * each send: libtas looks at the socket (a poll() system call) only
     * when this moved, or when a sleep saw the socket readable. */
    uint32_t ctl_sent;
    uint32_t pad;
};

/* Daemon-wide page every app maps read-only.  Each context's TX queue
 * belongs to one fast-path *queue*; with core scaling the queue is served by
 * whichever active core queue_owner names.  An app that posts a command
 * sends to that core's wake-up socket only if the core said it is sleeping.
 * The daemon writes this page; apps get it sealed against writes and resizing. */
struct tas_info {
    uint32_t magic;
    uint32_t version;
    uint32_t ncores;             /* fast-path cores (= queues) configured */
    uint32_t nactive;            /* cores active now (core scaling) */
    uint32_t core_sleeping[16];  /* by core */
    uint32_t queue_owner[16];    /* by queue: the active core serving it */
    int32_t core_cpu[16];        /* by core: the CPU its thread runs on (-1: not yet) */
    uint32_t pin_apps;           /* 1: an app runs its TAS thread on its core's CPU
                                    (fastpath.pin_apps): the data it moves stays in
                                    that CPU's cache */
    uint32_t ip;                 /* the daemon's address (host byte order) and */
    uint32_t prefix_len;         /* subnet: TAS has no router, so libtas leaves
                                    connections elsewhere (loopback, other
                                    networks) to the kernel's stack */
};

/* A context queue: this header, then TAS_CTXQ_ENTRIES entries.  One
 * producer, one consumer, free-running 32-bit indices (slot = index mod
 * TAS_CTXQ_ENTRIES).  Each side writes only its own index.  The app's
 * segment is untrusted: the daemon keeps the geometry and its own index
 * privately (it only publishes that index here), reads the app's index once
 * per burst and detaches a context whose index is out of range
 * (prod - cons > TAS_CTXQ_ENTRIES). */
struct tas_ctxq_hdr {
    uint32_t prod;               /* written by the producer only */
    uint32_t pad0[15];
    uint32_t cons;               /* written by the consumer only */
    uint32_t pad1[15];
};

struct tas_ctx_shm {
    uint32_t id;
    uint32_t queue;              /* fast-path queue whose core polls the TX queue */
    uint64_t rxq_off;            /* tas_ctxq_hdr + struct tas_arx entries */
    uint64_t txq_off;            /* tas_ctxq_hdr + struct tas_atx entries */
    uint32_t app_sleeping;       /* app blocks on its wake-up socket when set */
    uint32_t pad;
};

#define TAS_ARX_CONNUPDATE 1
/* A connection the fast path opened on a hand-over listener (it answered
 * the SYN itself): what a TAS_CTL_NEWCONN with TAS_CTL_FL_HANDOFF says, in
 * the queue, ahead of every other entry of the flow.  flow_id; opaque =
 * remote_ip << 32 | remote_port << 16 | local_port; rx_bump = listener_id;
 * rx_pos = rx_off; tx_bump = tx_off (the sizes and local_ip come with the
 * LISTEN reply).  A CONN_CLOSED may overtake it (control socket): the flow
 * was gone before it was acceptable. */
#define TAS_ARX_NEWCONN 2
#define TAS_ARX_FL_RXFIN 1       /* peer closed its side: no more data */
#define TAS_ARX_FL_ESTABLISHED 2 /* the handshake's final ACK came: a connection handed
                                    over at its SYN (TAS_CTL_FL_HANDOFF) may be accepted */
#define TAS_ARX_FL_RESET 4       /* the peer reset a quiet connection (its exact RST, taken
                                    by the fast path): what was received can still be
                                    read, then ECONNRESET; close it quietly */

/* A connect the fast path completed (TAS_ATX_CONNECT): what a CONN_OPENED
 * says.  flow_id; opaque = remote_ip << 32 | remote_port << 16 |
 * local_port; rx_bump = the request's req_id; rx_pos = rx_off; tx_bump =
 * tx_off (the sizes come with the REGISTER reply).  Ahead of every other
 * entry of the flow. */
#define TAS_ARX_OPENED 3
/* A connect the fast path does not open (TAS_ATX_CONNECT): rx_bump = its
 * req_id, flags = why (enum tas_conn_fallback, include/tas/synfast.h).
 * The app asks the slow path instead (TAS_CTL_CONNECT, a new req_id). */
#define TAS_ARX_CONNECT_SLOW 4

struct tas_arx {                 /* 32 bytes */
    uint16_t type;
    uint16_t flags;
    uint32_t flow_id;
    uint64_t opaque;
    uint32_t rx_bump;            /* new readable bytes */
    uint32_t rx_pos;             /* buffer offset where they start */
    uint32_t tx_bump;            /* bytes the peer acknowledged: TX space freed */
    uint32_t pad;
};

#define TAS_ATX_CONNUPDATE 1
#define TAS_ATX_FL_TXFIN 1       /* app closed its side after these bytes */
#define TAS_ATX_FL_CLOSED 2      /* app closed the socket (no TAS_CTL_CLOSE): the slow
                                    path reads it from the flow on its tick; a flow reset
                                    meanwhile gets its CLOSE when CONN_CLOSED comes */
#define TAS_ATX_FL_ACCEPTED 4    /* the app accepted this handed-over connection: if its
                                    process goes, the connection ends like an accepted
                                    socket's (FIN), not like one in Linux's accept queue
                                    (RST) */

/* connect(): flow_id = req_id (the app's, from the counter its control
 * messages use), rx_bump = remote IPv4 address, tx_bump = remote port
 * (host byte order).  The fast path answers in the context's RX queue
 * (TAS_ARX_OPENED or TAS_ARX_CONNECT_SLOW). */
#define TAS_ATX_CONNECT 2

struct tas_atx {                 /* 16 bytes */
    uint16_t type;
    uint16_t flags;
    uint32_t flow_id;
    uint32_t rx_bump;            /* bytes consumed (released) from the RX buffer */
    uint32_t tx_bump;            /* bytes appended to the TX buffer */
};

/* Control messages between libtas and the slow path (64 bytes). */
#define TAS_CTL_REGISTER 1       /* app -> sp (backlog = TAS_SHM_VERSION); see below */
#define TAS_CTL_LISTEN 2         /* local_port, backlog, ctx -> listener_id (hand-over:
                                    also local_ip, rx_size, tx_size of its flows) */
#define TAS_CTL_ACCEPT 3         /* listener_id, ctx -> CONN_OPENED */
#define TAS_CTL_CONNECT 4        /* remote ip/port, ctx -> CONN_OPENED */
#define TAS_CTL_CLOSE 5          /* flow_id (flags: TAS_CTL_FL_RESET) */
#define TAS_CTL_LISTEN_CLOSE 6
#define TAS_CTL_CTX_CREATE 7     /* app -> sp: reply ctx (index), rx_off (descriptor) + wake-up socket */
#define TAS_CTL_CLAIM 8          /* a forked child's first use of an inherited connection:
                                    flow_id (the parent's), ctx -> CONN_OPENED (the flow,
                                    moved to this app with the data not yet read; the
                                    parent gets CONN_CLOSED with TAS_CTL_FL_MOVED unless it
                                    closed it already); -EAGAIN: data still in flight,
                                    ask again; -EPERM: not a descendant of its owner */
#define TAS_CTL_CONN_OPENED 16   /* sp -> app */
#define TAS_CTL_CONN_CLOSED 17   /* sp -> app: flow gone (status: 0 or -ECONNRESET) */
#define TAS_CTL_NEWCONN 18       /* sp -> app: a connection waits on listener */
#define TAS_CTL_STATUS 19        /* sp -> app: reply status for a request */
#define TAS_CTL_FL_RESET 1
#define TAS_CTL_FL_SHARED 2      /* LISTEN: join the port's listeners (a forked
                                    worker's inherited listener, SO_REUSEPORT-like):
                                    for the same uid, or any uid whose request's
                                    opaque is the port's join key, which every
                                    LISTEN reply gives in opaque */
#define TAS_CTL_FL_HANDOFF 4     /* LISTEN: each NEWCONN carries the connection (the
                                    CONN_OPENED fields, flags TAS_CTL_FL_HANDOFF), sent with
                                    the SYN-ACK; the fast path's TAS_ARX_FL_ESTABLISHED (or a
                                    NEWCONN with TAS_CTL_FL_ESTAB) makes it acceptable; the
                                    app accepts it locally, no ACCEPT round trip, and counts
                                    it in the listener's accept counter: a uint64_t at
                                    segment offset rx_off of the LISTEN reply (the daemon's
                                    backlog holds established ones not counted there).
                                    CONN_CLOSED before it is acceptable: forget it */
#define TAS_CTL_FL_ESTAB 16      /* NEWCONN: a handed-over connection is established
                                    (its final ACK came the slow path's way) */
#define TAS_CTL_FL_NOREPLY 8     /* CLOSE: no TAS_CTL_STATUS answer (close does not wait) */
#define TAS_CTL_FL_REUSEADDR 32  /* LISTEN: SO_REUSEADDR was set: the port may still
                                    carry connections (closing ones of an exited
                                    server, say), as Linux allows; another listener
                                    on it is refused all the same */
#define TAS_CTL_FL_MOVED 64      /* CONN_CLOSED: a connection handed over to this app,
                                    which had not asked to accept on its listener, went to
                                    a process of the port's that does (prefork: the master
                                    never accepts); forget it, nothing to close */
#define TAS_CTL_FL_FORKED 128    /* CLOSE: children forked while the connection was open
                                    may hold it (pids in opaque's two halves, backlog and
                                    listener_id; 0: none): like Linux's last close, the FIN
                                    waits until they have exited, unless one claims it */
#define TAS_CLAIM_LISTENER 0xFFFFFFFFu   /* TAS_ARX_NEWCONN of a claimed flow (no listener) */

/* Reply to TAS_CTL_REGISTER (a TAS_CTL_STATUS): fds = segment fd (sealed
 * memfd, or the Strata pool), info page, the app's wake-up socket, one
 * wake-up socket per fast-path core;
 * opaque = segment bytes; rx_off = context 0's descriptor offset in the
 * segment; tx_off = the segment's offset in its fd in pages (0 for a memfd);
 * flags = TAS_REG_FL_NVM when the fd is a Strata pool (the app may then
 * register the mapping with libstrata's strata_nvm_map); rx_size, tx_size =
 * every flow's buffer sizes (a TAS_ARX_OPENED's). */
#define TAS_REG_FL_NVM 1
#define TAS_REG_OFF_SHIFT 12

struct tas_ctl_msg {
    uint16_t type;
    uint16_t flags;
    int32_t status;              /* 0 or -errno */
    uint32_t req_id;             /* echoed in the reply */
    uint32_t flow_id;
    uint32_t listener_id;
    uint32_t ctx;
    uint32_t local_ip;
    uint32_t remote_ip;          /* host byte order */
    uint16_t local_port;
    uint16_t remote_port;
    uint32_t backlog;
    uint64_t opaque;
    uint32_t rx_off;             /* segment offsets/sizes of the flow buffers */
    uint32_t rx_size;
    uint32_t tx_off;
    uint32_t tx_size;
};
/* CDEF-END */

_Static_assert(sizeof(struct tas_arx) == 32, "arx entry is 32 bytes");
_Static_assert(sizeof(struct tas_atx) == 16, "atx entry is 16 bytes");
_Static_assert(sizeof(struct tas_ctl_msg) == 64, "control message is 64 bytes");
_Static_assert(sizeof(struct tas_ctxq_hdr) == 128, "queue indices on their own cache lines");
_Static_assert((TAS_CTXQ_ENTRIES & (TAS_CTXQ_ENTRIES - 1)) == 0, "queue size is a power of two");

#endif
