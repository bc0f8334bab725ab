/* Fast-path internals shared by the fast-path C files (not by apps). */
#ifndef TAS_FP_INTERNAL_H
#define TAS_FP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_spinlock.h>

#include "tas/fastpath.h"
#include "tas/flow.h"
#include "tas/shm.h"
#include "tas/synfast.h"

#define FP_BURST 32
/* Fault injection can double a received burst and add one held frame. */
#define FP_RX_MAX (2 * FP_BURST + 1)
/* Packets a core keeps while the port's TX ring is full (fp_txq.c) */
#define FP_TX_HELD 512

/* Where a core's cycles go (exclusive: a stage entered inside another is
 * not charged to the outer one).  Read with rte_rdtsc at each switch and
 * added to the stats page once per loop round (fp_cyc_<stage> cycles,
 * fp_cyc_<stage>_n entries), so `tasctl stats` and bench/tas_bulk.py can
 * show cycles per packet per stage. */
enum fp_stage {
    FP_ST_LOOP,      /* polling, scheduling, bookkeeping between the stages */
    FP_ST_RX_DRV,    /* rte_eth_rx_burst: the driver */
    FP_ST_RX,        /* classify, TCP receive, payload copy into the RX buffer */
    FP_ST_ACK,       /* building pure ACKs */
    FP_ST_NOTIFY,    /* notifying apps (queue entry, wake-up) */
    FP_ST_TX,        /* TCP segment generation: headers + payload copy */
    FP_ST_TX_DRV,    /* rte_eth_tx_burst: the driver */
    FP_ST_APP,       /* app commands (consumed / appended bytes) */
    FP_ST_IDLE,      /* blocked (not reported) */
    FP_ST_N
};
#define FP_STAGE_NAMES {"loop", "rx_drv", "rx", "ack", "notify", "tx", "tx_drv", "app", "idle"}

/* Counters every core bumps; pointers into the daemon's stats page. */
struct fp_counters {
    uint64_t *rx_pkts, *rx_bytes, *tx_pkts, *tx_bytes, *tx_drops, *tx_held;
    uint64_t *drop_malformed, *drop_not_ours, *exc[TAS_EXC_NREASONS];
    uint64_t *exc_ring_full, *sp_tx_pkts, *sleeps, *wakeups, *poll_sleeps;
    /* TCP data path */
    uint64_t *tcp_rx_segs, *tcp_rx_bytes, *tcp_tx_segs, *tcp_tx_bytes, *acks_sent;
    uint64_t *drop_bad_csum, *rx_buf_full, *ooo_accepted, *ooo_dropped, *rx_dup;
    uint64_t *dupacks, *fast_rexmits, *rto_rexmits, *app_bad_cmd, *notify_deferred,
        *app_cmd_flow_gone;
    uint64_t *probes_answered, *rst_ignored, *challenge_acks, *challenge_limited, *app_bad_ctx;
    uint64_t *sack_blocks_sent, *sack_rexmit_segs, *spurious_rtos, *rate_waits_rescaled;
    uint64_t *flows_added, *flows_removed, *flows_moved;
    uint64_t *fault_dropped, *fault_duplicated, *fault_reordered;
    uint64_t *cyc[FP_ST_N], *cyc_n[FP_ST_N];
    /* SYNs for listeners (their own page, tas_fp_syn_stats) */
    uint64_t *syn_fast, *syn_fallback[TAS_SYN_FB_N], *syn_kicks;
    /* connects (their own page, tas_fp_conn_stats) */
    uint64_t *conn_fast, *conn_fallback[TAS_CONN_FB_N], *conn_untold;
};

/* An application context.  Its queues live in the app's segment, which the
 * app can rewrite at any time: the geometry (TAS_CTXQ_ENTRIES, slot
 * pointers) and our own indices are kept here, the app's index is read once
 * per burst and checked (fp_apps.c).  A context caught with an impossible
 * index is marked bad and no longer touched; the slow path detaches its app. */
/* The counters every packet bumps, kept per core and added to the stats
 * page once a loop round (fp_core_flush_counts): an atomic add on a shared
 * page per packet costs more than the rest of the bookkeeping. */
struct fp_hot_counts {
    uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes;
    uint64_t tcp_rx_segs, tcp_rx_bytes, tcp_tx_segs, tcp_tx_bytes, acks_sent;
};

struct fp_ctx {
    bool active;
    bool bad;
    uint32_t app_id;
    uint16_t queue;             /* served by the core that owns this queue */
    struct tas_ctxq_hdr *rxh;   /* notifications, fast path -> app */
    struct tas_arx *rx_slots;
    uint32_t rx_prod;           /* private producer index (under rx_lock) */
    rte_spinlock_t rx_lock;     /* several cores and the slow path notify */
    struct tas_ctxq_hdr *txh;   /* commands, app -> fast path */
    struct tas_atx *tx_slots;
    uint32_t tx_cons;           /* private consumer index (queue owner only) */
    uint32_t *app_sleeping;     /* in app memory: only a hint */
    int wake_sock;              /* our end of the app's wake-up socketpair */
    int16_t connector;          /* the app's connector's listener slot, -1: none */
};

#define FP_MAX_CTX 256

/* A listener (fp_listeners.c).  The slow path writes the identity before
 * it sets active; the pool and the counters are under lock. */
struct fp_listener {
    rte_spinlock_t lock;
    bool active;                /* read without the lock, rechecked under it */
    bool handoff;
    bool accepting;
    bool primary;               /* takes connections while none is accepting */
    bool connector;             /* an app's connects, not a port's SYNs (port 0) */
    uint16_t port;
    uint16_t ctx;
    uint32_t id;
    uint32_t app_id;
    uint32_t backlog;
    const uint64_t *accept_ctr; /* in the app's segment (hand-over listeners) */
    uint64_t opened, gone;      /* backlog: opened - gone - *accept_ctr wait */
    uint32_t npool, npool_hi;   /* entries now, most ever pushed */
    struct tas_syn_buf pool[TAS_SYN_POOL_MAX];
};

struct fp_flow_key {
    uint32_t peer_ip;
    uint16_t local_port;
    uint16_t peer_port;
};

static inline struct fp_flow_key fp_flow_key(uint32_t peer_ip, uint16_t local_port,
                                             uint16_t peer_port)
{
    struct fp_flow_key k;
    memset(&k, 0, sizeof(k));      /* hashed as bytes */
    k.peer_ip = peer_ip;
    k.local_port = local_port;
    k.peer_port = peer_port;
    return k;
}

struct fp_core {
    struct tas_fp *fp;
    uint16_t idx;             /* fast-path core index = its TX queue id */
    unsigned lcore;
    int wake_fd;              /* eventfd, private: the slow path wakes a sleeping core */
    int app_wake_rx;          /* datagram socket apps wake the core through */
    int app_wake_tx;          /* its peer, handed to apps (never ours to write) */
    int epfd;                 /* wake fds + RX interrupt fds of served queues */
    uint32_t intr_mask;       /* queues whose RX interrupt fd is in epfd */
    uint32_t asleep;          /* set before blocking; the authority */
    uint32_t *sleeping;       /* its copy in the info page, for apps */
    uint64_t busy_cycles, total_cycles;
    volatile uint64_t epoch;  /* loop iterations, for quiescence */
    struct rte_mbuf *held_rx; /* fault injection: a frame delayed for reordering */
    unsigned ntx;             /* packets batched for the next tx_burst */
    struct rte_mbuf *txbuf[FP_BURST];
    unsigned nheld;           /* sent before anything else once the ring has room */
    uint64_t held_sent;       /* of them, sent so far (progress for the loop) */
    struct rte_mbuf *held[FP_TX_HELD];
    /* flows owed an ACK at the end of the RX burst (TAS_FLF_ACK_DUE) */
    unsigned nack_due;
    struct tas_flow *ack_due[FP_RX_MAX];
    uint64_t ack_due_since;   /* TSC when the oldest of them was first owed */
    /* flows with app notifications gathered over the RX burst */
    unsigned nnotify_due;
    struct tas_flow *notify_due[FP_RX_MAX];
    struct fp_hot_counts hot;
    /* cycle accounting (fp_stage_enter) */
    enum fp_stage stage;
    uint64_t stage_t0;
    uint64_t stage_cyc[FP_ST_N], stage_n[FP_ST_N];
} __rte_cache_aligned;

struct tas_fp {
    struct tas_fp_conf conf;
    uint16_t port;
    bool rx_intr;
    int rx_intr_fd[TAS_FP_MAX_CORES];   /* per queue, -1 without interrupts */
    volatile uint16_t nactive;          /* core scaling: cores 0..nactive-1 run */
    uint16_t reta_size;                 /* NIC RSS redirection table, 0: none */
    rte_spinlock_t qlock[TAS_FP_MAX_CORES]; /* held by the core serving a queue */
    bool started;
    volatile int stop;
    struct rte_mempool *pool;
    uint32_t frame_room;        /* bytes of frame an mbuf holds (MTU + Ethernet) */
    uint16_t dev_mtu;           /* MTU configured through DPDK (0: set outside it) */
    uint16_t tx_mtu;            /* largest IP packet the port sends (tas_fp_tx_mtu) */
    struct rte_ring *exc_ring;  /* fast path -> slow path packets (MP/SC) */
    struct rte_ring *sp_tx_ring;/* slow path -> core 0 packets (SP/SC) */
    struct rte_ring *inject_ring;/* slow path -> core 0 frames to receive again */
    int sp_fd;                  /* eventfd: exceptions queued */
    int info_fd;                /* memfd of the struct tas_info page */
    struct tas_info *info;
    volatile int sp_sleeping;
    struct fp_counters ctr;
    struct fp_core cores[TAS_FP_MAX_CORES];
    uint64_t tsc_hz;
    uint64_t tsc_per_us;            /* tsc_hz / 1e6: one division per clock read, not two */
    uint64_t delack_cycles;         /* conf.delack_us in TSC cycles */
    /* flows */
    struct rte_hash *flow_hash;
    struct tas_flow *flows;         /* TAS_FLOW_MAX slots */
    uint32_t *flow_free;            /* FIFO of free slot ids (slow path only) */
    uint32_t flow_free_head, flow_free_count;
    uint32_t nflows;
    uint32_t notify_retry;          /* a notification was deferred: rescan */
    uint32_t challenge_sec;         /* second (fp_now_us / 1e6) of the budget */
    uint32_t challenge_count;       /* challenge ACKs sent in that second */
    struct rte_ring *tx_work[TAS_FP_MAX_CORES]; /* flow ids with data to send */
    struct fp_ctx ctxs[FP_MAX_CTX];
    uint16_t ctx_hi;                /* one past the highest context ever used */
    uint32_t bad_ctx_events;        /* bumped when a context is marked bad */
    /* TSC at the start of the last RX poll of queue q that emptied it */
    uint64_t rx_drained_tsc[TAS_FP_MAX_CORES];
    /* flow table writers: the slow path and cores answering SYNs */
    rte_spinlock_t flow_wlock;
    /* listeners and SYNs answered here (fp_listeners.c, fp_tcp_syn.c) */
    struct fp_listener *listeners;      /* TAS_SYN_MAX_LISTENERS */
    uint16_t listeners_hi;              /* one past the highest slot used */
    uint32_t syn_rr;                    /* round robin over a port's listeners */
    struct tas_syn_conf syn;
    struct rte_ring *syn_opened;        /* struct tas_syn_opened, cores -> slow path */
    struct rte_hash *tw_hash;           /* TIME_WAIT pairs -> rcv_nxt */
    uint16_t syn_held[TAS_SYN_HELD_SLOTS];
    struct fp_idle *idle;               /* parked idle flows (fp_flow_idle.c) */
    struct fp_syn_sweep *sweep;         /* opened here, not yet the slow path's
                                           (fp_syn_sweep.c) */
    struct fp_connecting *connecting;   /* per flow id: its connect (fp_tcp_connect.c) */
    struct rte_ring *conn_slow;         /* struct tas_conn_slow, cores -> slow path */
    uint32_t conn_next_port;            /* where the next connect's port search starts */
    struct fp_neigh *neigh;             /* peers' MACs for connects (fp_neigh.c) */
};

/* fp_classify.c: validate one received frame.  FP_DROP: dropped and
 * counted (caller frees); FP_EXCEPTION: for the slow path (reason set);
 * FP_FLOW: a TCP segment of an installed flow (*flow set). */
enum fp_verdict { FP_DROP, FP_EXCEPTION, FP_FLOW };
/* The flow the previous segment of the burst belonged to: a burst is mostly
 * one flow's segments, and the hash lookup is skipped for them (fp_tcp_rx
 * checks the flow's identity under its lock either way). */
struct fp_flow_hint {
    struct tas_flow *flow;
    uint32_t peer_ip;
    uint16_t local_port, peer_port;
};
enum fp_verdict fp_classify(struct tas_fp *fp, struct rte_mbuf *m, uint32_t *reason,
                            struct tas_flow **flow, struct fp_flow_hint *hint);

/* fp_flows.c */
int fp_flows_init(struct tas_fp *fp);
/* Install a flow (either writer; takes flow_wlock): its id, or -1. */
int fp_flow_install(struct tas_fp *fp, const struct tas_flow_init *in);
void fp_flows_free(struct tas_fp *fp);
/* fp_flow_idle.c: the slow path's parked flows (slow-path thread only). */
int fp_idle_init(struct tas_fp *fp);
void fp_idle_free(struct tas_fp *fp);
struct tas_flow *fp_flow_find(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                              uint16_t peer_port);
void fp_flow_queue_tx(struct tas_fp *fp, struct tas_flow *f);
/* Go back to tx_una: everything unacknowledged is sent again (lock held). */
void fp_flow_go_back(struct tas_flow *f);
static inline uint32_t fp_flow_id(struct tas_fp *fp, struct tas_flow *f)
{
    return (uint32_t)(f - fp->flows);
}
/* The largest segment the peer may send us: the MSS we advertised
 * (tcp.mss, less the timestamp option if the flow carries it), which is
 * more than the flow's own mss where we send smaller
 * frames than we take (net_tap: 1,460 out, 8,948 in at MTU 9000).  The
 * receive side counts "full segments" (ACK every second one) and opens the
 * window (an update once two fit) in these: counted in the send MSS, every
 * jumbo segment was ACKed at once and a window update of 4 KiB, under one
 * segment, left the peer waiting for its persist timer. */
static inline uint32_t fp_rx_mss(const struct tas_fp *fp, const struct tas_flow *f)
{
    uint32_t opts = (f->flags & TAS_FLF_TS) ? 12u : 0u;   /* the timestamp option */
    return RTE_MAX((uint32_t)f->mss, (uint32_t)fp->syn.mss - opts);
}

static inline void fp_lock(struct tas_flow *f)
{
    rte_spinlock_lock((rte_spinlock_t *)&f->lock);
}
/* A release store is all a lock release needs; rte_spinlock_unlock uses
 * xchg, a locked instruction (a full barrier) once more per segment. */
static inline void fp_unlock(struct tas_flow *f)
{
    __atomic_store_n(&f->lock, 0, __ATOMIC_RELEASE);
}
/* TCP options: the option at o or after the NOPs there; NULL at the end
 * (EOL, or the header's end), with *bad set if one is malformed.  Walk with
 * o = fp_tcp_opt(o + o[1], end, &bad). */
static inline const uint8_t *fp_tcp_opt(const uint8_t *o, const uint8_t *end, bool *bad)
{
    while (o < end && *o == 1)
        o++;
    if (o >= end || *o == 0)
        return NULL;
    if (o + 1 >= end || o[1] < 2 || o + o[1] > end) {
        *bad = true;
        return NULL;
    }
    return o;
}

/* Sequence-number comparisons modulo 2^32. */
static inline int32_t seq_diff(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b);
}

/* fp_tcp_rx.c: a TCP segment of an installed flow.  Consumes m and returns
 * FP_RX_CONSUMED, or returns the exception reason the slow path must see it
 * with (TAS_EXC_TCP_FLOW: already processed here). */
#define FP_RX_CONSUMED UINT32_MAX
/* The caller holds f's lock (process_rx keeps it over a run of f's segments). */
uint32_t fp_tcp_rx(struct fp_core *c, struct tas_flow *f, struct rte_mbuf *m);
/* After a burst of fp_tcp_rx: the ACKs coalesced during it. */
void fp_tcp_rx_burst_end(struct fp_core *c);
void fp_tcp_acks_flush(struct fp_core *c, bool force);

/* fp_tcp_guard.c (RFC 5961; flow lock held): true if a RST with this
 * sequence number closes the flow; otherwise it was answered or ignored. */
bool fp_tcp_rst_exact(struct fp_core *c, struct tas_flow *f, uint32_t seq);
void fp_tcp_challenge_ack(struct fp_core *c, struct tas_flow *f);

/* fp_tcp_sack.c: SACK recovery (flow lock held).  dupack: in recovery or
 * on the third duplicate ACK; false if the peer gave no SACK information
 * (then go back to the last ACK).  newack: after an ACK that advanced. */
struct fp_sack_info {
    bool present;
    uint32_t lowest;           /* lowest SACK left edge above the ACK */
};
bool fp_sack_dupack(struct fp_core *c, struct tas_flow *f, const struct fp_sack_info *si);
void fp_sack_newack(struct fp_core *c, struct tas_flow *f, const struct fp_sack_info *si);

/* fp_tcp_tx.c */
void fp_tcp_send_ack(struct fp_core *c, struct tas_flow *f);
void fp_tcp_send_probe(struct fp_core *c, struct tas_flow *f);
/* Resend [seq, end) of the TX buffer now (SACK recovery; lock held). */
uint32_t fp_tcp_resend(struct fp_core *c, struct tas_flow *f, uint32_t seq, uint32_t end);
unsigned fp_tcp_tx_work(struct fp_core *c, uint16_t q);

/* microseconds from the TSC: TCP timestamps, RTO and progress stamps */
static inline uint32_t fp_now_us(struct tas_fp *fp)
{
    return (uint32_t)(rte_get_tsc_cycles() / fp->tsc_per_us);
}

/* fp_apps.c */
/* A command fp_apps.c does not handle itself (TAS_ATX_CONNECT: the loop
 * passes fp_tcp_connect, a layer up); false: leave it queued. */
typedef bool (*fp_connect_fn)(struct fp_core *c, struct fp_ctx *x, const struct tas_atx *e);
unsigned fp_apps_poll(struct fp_core *c, uint16_t q, fp_connect_fn on_connect);
bool fp_apps_pending(struct tas_fp *fp, uint16_t q);
void fp_notify_app(struct tas_fp *fp, struct tas_flow *f, uint32_t rx_bump,
                   uint32_t rx_pos, uint32_t tx_bump, uint32_t flags);
void fp_notify_later(struct fp_core *c, struct tas_flow *f, uint32_t rx_bump,
                     uint32_t rx_pos, uint32_t tx_bump, uint32_t flags);
void fp_notify_flush(struct fp_core *c);

/* fp_syn_sweep.c: the slow path's list of connections opened here. */
int fp_syn_sweep_init(struct tas_fp *fp);
void fp_syn_sweep_free(struct tas_fp *fp);
/* fp_listeners.c: the listener table, pools and held 4-tuples. */
int fp_listeners_init(struct tas_fp *fp);
void fp_listeners_free(struct tas_fp *fp);
/* The listener that takes a new connection to port (round robin over those
 * that accept); NULL with *why set if none may (no listener: *why = -1). */
struct fp_listener *fp_listener_pick(struct tas_fp *fp, uint16_t port, int *why);
/* A listener slot (tas_fp_listener_add), or an app's connector (port 0). */
int fp_listener_slot_add(struct tas_fp *fp, uint32_t listener_id, uint16_t port, uint16_t ctx,
                         uint32_t app_id, int handoff, uint32_t backlog,
                         const uint64_t *accept_ctr, bool connector);
/* A connection opened on l (its lock held) with its last pool entry: the
 * record for the sweep queued, the entry gone. */
void fp_listener_took(struct tas_fp *fp, struct fp_listener *l, struct tas_syn_opened *rec,
                      const uint8_t *peer_mac);
/* Counters <prefix><names[i]> of the page into out[i]. */
void fp_stats_by_reason(struct kb_stats_page *page, const char *prefix,
                        const char *const *names, int n, uint64_t **out);
/* Is port a listener's (connects do not take it)? */
bool fp_listener_port(struct tas_fp *fp, uint16_t port);
bool fp_syn_held(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port, uint16_t peer_port);
/* A SYN with sequence number seq for a pair: FP_TW_NONE (not in TIME_WAIT),
 * FP_TW_REUSED (it was; the SYN is above the old sequence space, and the
 * pair is out of the table now; *rcv_nxt is what it held) or FP_TW_KEEP
 * (the slow path judges it). */
enum fp_tw { FP_TW_NONE, FP_TW_REUSED, FP_TW_KEEP };
/* May a connect take this pair?  0: it is not in TIME_WAIT; 1: it was,
 * for over a second, and tcp.time_wait_reuse lets the connect take it, as
 * Linux's tcp_tw_reuse does: it is out of the table now (*rcv_nxt: what it
 * held); -1: no. */
int fp_tw_take_for_connect(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                           uint16_t peer_port, uint32_t *rcv_nxt);
enum fp_tw fp_syn_time_wait(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                            uint16_t peer_port, uint32_t seq, uint32_t *rcv_nxt);

/* fp_tcp_syn.c: answer a SYN for a hand-over listener (true: m consumed);
 * false: the slow path takes it (counted when a listener was there). */
bool fp_tcp_syn(struct fp_core *c, struct rte_mbuf *m);

/* fp_tcp_syn.c: SYN options (parse: false if malformed), and a SYN or
 * SYN-ACK of flow f (ack: f->rx_next_seq) offering what `offer` says, its
 * timestamp echoing offer->tsval. */
struct fp_syn_opts {
    uint16_t mss;              /* 0: none */
    int wscale;                /* -1: none */
    bool sack, ts;
    uint32_t tsval;
};
bool fp_syn_parse_options(const uint8_t *start, const uint8_t *end, struct fp_syn_opts *so);
struct rte_mbuf *fp_syn_frame(struct tas_fp *fp, const struct tas_flow *f, uint32_t seq,
                              uint8_t tcp_flags, const struct fp_syn_opts *offer);
/* The flow's MSS for what the peer's SYN (or SYN-ACK) said. */
uint16_t fp_syn_mss(const struct tas_fp *fp, const struct fp_syn_opts *so);

/* fp_tcp_connect.c: a TAS_ATX_CONNECT of context x; the SYN-ACK (or what
 * came instead) of a TAS_FLF_SYNSENT flow (lock held; fp_tcp_rx's return). */
int fp_connect_init(struct tas_fp *fp);
void fp_connect_free(struct tas_fp *fp);
/* false: not taken now (the slow path's ring is full): leave it queued */
bool fp_tcp_connect(struct fp_core *c, struct fp_ctx *x, const struct tas_atx *e);
uint32_t fp_tcp_synsent(struct fp_core *c, struct tas_flow *f, struct rte_mbuf *m);

/* fp_neigh.c: the peer's MAC, if the slow path put it in the table. */
int fp_neigh_init(struct tas_fp *fp);
void fp_neigh_free(struct tas_fp *fp);
bool fp_neigh_get(struct tas_fp *fp, uint32_t ip, uint8_t mac[6]);

/* fp_apps.c: a connection handed over at its SYN (TAS_ARX_NEWCONN); 0, or
 * -1 if the context's queue is full or the context is unusable. */
int fp_notify_newconn(struct tas_fp *fp, uint16_t ctx, const struct tas_arx *e);

/* fp_slowpath.c */
/* Wake the slow path (its eventfd). */
void fp_sp_kick(struct tas_fp *fp);
void fp_exceptions_push(struct tas_fp *fp, struct rte_mbuf **pkts, uint32_t *reasons, unsigned n);
unsigned fp_sp_tx_drain(struct tas_fp *fp, struct rte_mbuf **out, unsigned max);
void fp_core_wake(struct fp_core *c);

/* fp_scaling.c: which active core serves queue q; wake it. */
static inline uint16_t fp_queue_owner(struct tas_fp *fp, uint16_t q)
{
    uint16_t n = __atomic_load_n(&fp->nactive, __ATOMIC_SEQ_CST);
    return (uint16_t)(q % (n ? n : 1));
}
void fp_queue_wake(struct tas_fp *fp, uint16_t q);
/* An inactive core that was woken passes the wake-up on to the active
 * cores (its waker may have read the queue owners before a change). */
void fp_wake_active(struct tas_fp *fp);
void fp_scaling_init(struct tas_fp *fp);

/* fp_fault.c: apply configured loss/duplication/reordering to a burst in
 * place; returns the new count (at most max). */
unsigned fp_fault_rx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n, unsigned max);
unsigned fp_fault_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n);

/* Charge the cycles up to `now` to the current stage and enter stage s
 * there; returns the stage to go back to (fp_stage_leave). */
static inline enum fp_stage fp_stage_enter_at(struct fp_core *c, enum fp_stage s, uint64_t now)
{
    enum fp_stage prev = c->stage;
    c->stage_cyc[prev] += now - c->stage_t0;
    c->stage_t0 = now;
    c->stage = s;
    c->stage_n[s]++;
    return prev;
}
static inline enum fp_stage fp_stage_enter(struct fp_core *c, enum fp_stage s)
{
    return fp_stage_enter_at(c, s, rte_rdtsc());
}
static inline void fp_stage_leave(struct fp_core *c, enum fp_stage prev)
{
    uint64_t now = rte_rdtsc();
    c->stage_cyc[c->stage] += now - c->stage_t0;
    c->stage_t0 = now;
    c->stage = prev;
}

/* fp_loop.c */
int fp_core_loop(void *arg);

/* fp_txq.c: the port's transmit side, below TCP (calls nothing above). */
void fp_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n);
/* Append the Ethernet and IPv4 headers of a TCP packet of flow f with
 * l4len bytes after them to the empty mbuf m (the IP checksum is left for
 * the caller, who fills in the rest); NULL, m freed, if it does not fit. */
struct rte_ipv4_hdr *fp_tx_ipv4(struct tas_fp *fp, struct rte_mbuf *m, const struct tas_flow *f,
                                uint32_t l4len, uint8_t tos);
/* Batch one packet for transmission; fp_tx_flush sends the batch. */
void fp_tx_one(struct fp_core *c, struct rte_mbuf *m);
void fp_tx_flush(struct fp_core *c);
bool fp_tx_backlogged(const struct fp_core *c);   /* build no new data segments now */
void fp_tx_drop_held(struct fp_core *c);

/* fp_error.c */
void fp_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
