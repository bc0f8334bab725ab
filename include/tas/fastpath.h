/*
 * Control interface between the daemon's slow path (Python, via cffi) and
 * the fast path (C, on DPDK lcores).  The block between CDEF-BEGIN and
 * CDEF-END is parsed by cffi; the rest is C-only.
 */
#ifndef TAS_FASTPATH_H
#define TAS_FASTPATH_H

#include <stdint.h>
#include "kb/stats.h"

/* CDEF-BEGIN */
#define TAS_FP_MAX_CORES 16

/* Why a packet went to the slow path (counted per reason). */
enum tas_exc_reason {
    TAS_EXC_ARP = 0,
    TAS_EXC_ICMP = 1,
    TAS_EXC_TCP_CTRL = 2,     /* SYN/FIN/RST or unknown flow */
    TAS_EXC_OTHER = 3,
    TAS_EXC_TCP_FLOW = 4,     /* an installed flow's segment the fast path
                                 already processed (its FIN, an exact RST) */
    TAS_EXC_NREASONS = 5
};

struct tas_fp_conf {
    uint32_t ip;              /* our IPv4 address, host byte order */
    uint32_t prefix_len;      /* ... and our subnet (tas_info: libtas routes by it) */
    uint8_t mac[6];           /* our MAC */
    uint16_t ncores;          /* fast-path lcores (one RX/TX queue pair each) */
    uint32_t lcores[16];      /* lcore id of each fast-path core */
    uint32_t nb_mbufs;        /* mbuf pool size */
    uint16_t mtu;             /* IP MTU of the port (576..9000); mbufs hold a whole frame */
    uint16_t rx_desc;         /* NIC RX/TX ring sizes */
    uint16_t tx_desc;
    uint32_t sp_ring_size;    /* slow-path exception / TX rings (power of 2) */
    uint32_t idle_block_us;   /* block on eventfd after this long idle */
    int32_t no_rx_intr;       /* 1: never use RX interrupts (poll + short sleeps) */
    uint32_t poll_sleep_us;   /* blocked without RX interrupts: first polling step */
    uint32_t poll_sleep_max_us; /* steps double while idle, up to this */
    int32_t yield_idle;       /* 1: sched_yield() after an empty poll round */
    int32_t pin_apps;         /* 1: tell apps to run on their core's CPU (tas_info) */
    /* Fault injection (parts per million, 0 = off): a lossy network for
     * testing where the kernel has no netem. */
    uint32_t fault_rx_loss_ppm;
    uint32_t fault_rx_dup_ppm;
    uint32_t fault_rx_reorder_ppm;
    uint32_t fault_tx_loss_ppm;
    uint32_t fault_tx_reorder_ppm;
    /* RFC 5961 challenge ACKs: at most one per flow per invalid_ratelimit_ms
     * and challenge_ack_limit per second in all (Linux's
     * tcp_invalid_ratelimit and tcp_challenge_ack_limit). */
    uint32_t invalid_ratelimit_ms;
    uint32_t challenge_ack_limit;
    /* Flows installed at once, 1..TAS_FLOW_MAX (0: TAS_FLOW_MAX); fewer
     * only to see a full flow table (fastpath.max_flows) */
    uint32_t max_flows;
    /* In-order data not yet ACKed at the end of an RX burst is ACKed once
     * the oldest has waited this long (0: at the end of every burst) */
    uint32_t delack_us;
};

struct tas_fp;

/* Probe the first available port, configure queues, start it.  NULL on error
 * (the error text is in tas_fp_error()).  stats: the daemon's stats page. */
struct tas_fp *tas_fp_create(const struct tas_fp_conf *conf, struct kb_stats_page *stats);
const char *tas_fp_error(void);
int tas_rte_errno(void);        /* rte_errno of the calling thread */
int tas_fp_port_id(struct tas_fp *fp);
int tas_fp_rx_intr(struct tas_fp *fp);     /* 1 if blocking uses RX interrupts */
/* The largest IP packet the port sends: dpdk.mtu, or less where the driver
 * receives more than it lets us send (DPDK 22.11's tap PMD drops TX frames
 * above 1500 + Ethernet whatever the interface's MTU).  The send MSS is
 * limited by it; the MSS we advertise follows dpdk.mtu. */
int tas_fp_tx_mtu(struct tas_fp *fp);

/* Launch the fast-path loops on their lcores; stop joins them. */
int tas_fp_start(struct tas_fp *fp);
void tas_fp_stop(struct tas_fp *fp);
/* Stop and close the port, free pools and rings. */
void tas_fp_destroy(struct tas_fp *fp);

/* Slow-path side of the exception path.  sp_fd is an eventfd readable when
 * exceptions are queued.  recv copies one packet out (0: none queued);
 * send queues one packet for transmission by fast-path core 0. */
int tas_fp_sp_fd(struct tas_fp *fp);
int tas_fp_info_fd(struct tas_fp *fp);   /* memfd of struct tas_info */
int tas_fp_sp_recv(struct tas_fp *fp, uint8_t *buf, uint32_t buflen, uint32_t *reason);
int tas_fp_sp_send(struct tas_fp *fp, const uint8_t *buf, uint32_t len);
/* Hand a received frame back to the fast path as if it had just arrived
 * (a segment that raced the installation of its flow). */
int tas_fp_sp_inject(struct tas_fp *fp, const uint8_t *buf, uint32_t len);

/* The TCP timestamp clock (microseconds) the fast path stamps with; the
 * slow path must stamp handshakes from the same clock (peers check PAWS). */
uint32_t tas_fp_ts_now(struct tas_fp *fp);

/* Retransmission timeouts must not act on flow state the fast path has not
 * caught up with: the fast-path clock (tas_fp_ts_now) at the start of the
 * last poll of queue q's RX ring that emptied it (everything received
 * before then has been processed), and a kick that makes its core poll. */
uint32_t tas_fp_queue_drained_us(struct tas_fp *fp, uint16_t q);
void tas_fp_queue_kick(struct tas_fp *fp, uint16_t q);

/* Where the fast path's cycles go, per stage (fp_cyc_<stage> cycles and
 * fp_cyc_<stage>_n entries, and tsc_hz), on this page; before tas_fp_start. */
void tas_fp_cycle_stats(struct tas_fp *fp, struct kb_stats_page *page);

/* Per-core idle accounting for core scaling: busy and total TSC cycles. */
void tas_fp_core_load(struct tas_fp *fp, uint16_t core, uint64_t *busy, uint64_t *total);

/* Core scaling (dissertation 3.2.4).  Every configured core has its own NIC
 * queue pair, TX work list and share of the app contexts ("queue" q).  Only
 * the first n cores are active; queue q is served by active core q % n, and
 * the other cores block.  A packet or command that reaches a core about to
 * hand its queue over is still correct: per-queue ownership is taken with a
 * trylock and flow state is under the flow lock.  Returns the new count. */
uint16_t tas_fp_set_active_cores(struct tas_fp *fp, uint16_t n);
uint16_t tas_fp_active_cores(struct tas_fp *fp);
/* The device's packet counts of queue q (-1 if it keeps none), and the size
 * of its RSS redirection table (0: none, queues are taken over in software). */
int tas_fp_queue_packets(struct tas_fp *fp, uint16_t q, uint64_t *rx, uint64_t *tx);
int tas_fp_reta_size(struct tas_fp *fp);
/* CDEF-END */

#endif
