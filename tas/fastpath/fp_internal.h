/* Fast-path internals shared by the fast-path C files (not by apps). */
#ifndef TAS_FP_INTERNAL_H
#define TAS_FP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "tas/fastpath.h"

#define FP_BURST 32

/* Counters every core bumps; pointers into the daemon's stats page. */
struct fp_counters {
    uint64_t *rx_pkts, *rx_bytes, *tx_pkts, *tx_bytes, *tx_drops;
    uint64_t *drop_malformed, *drop_not_ours, *exc[TAS_EXC_NREASONS];
    uint64_t *exc_ring_full, *sp_tx_pkts, *sleeps, *wakeups;
};

struct fp_core {
    struct tas_fp *fp;
    uint16_t idx;             /* fast-path core index = queue id */
    unsigned lcore;
    int wake_fd;              /* eventfd: slow path / apps wake a sleeping core */
    int rx_intr_fd;           /* RX queue interrupt fd, or -1 */
    int epfd;
    volatile int sleeping;    /* set before blocking; wakers check it */
    uint64_t busy_cycles, total_cycles;
} __rte_cache_aligned;

struct tas_fp {
    struct tas_fp_conf conf;
    uint16_t port;
    bool rx_intr;
    bool started;
    volatile int stop;
    struct rte_mempool *pool;
    struct rte_ring *exc_ring;  /* fast path -> slow path packets (MP/SC) */
    struct rte_ring *sp_tx_ring;/* slow path -> core 0 packets (SP/SC) */
    int sp_fd;                  /* eventfd: exceptions queued */
    volatile int sp_sleeping;
    struct fp_counters ctr;
    struct fp_core cores[TAS_FP_MAX_CORES];
};

/* fp_classify.c: validate one received frame; returns true if it must go to
 * the slow path (reason set), false if it was dropped (and counted). */
bool fp_classify(struct tas_fp *fp, struct rte_mbuf *m, uint32_t *reason);

/* fp_slowpath.c */
void fp_exceptions_push(struct tas_fp *fp, struct rte_mbuf **pkts, uint32_t *reasons, unsigned n);
unsigned fp_sp_tx_drain(struct tas_fp *fp, struct rte_mbuf **out, unsigned max);
void fp_core_wake(struct fp_core *c);

/* fp_loop.c */
int fp_core_loop(void *arg);
void fp_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n);

/* fp_error.c */
void fp_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
