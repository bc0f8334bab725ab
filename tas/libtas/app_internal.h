/* Internals of the libtas core shared by app.c (attach, control messages)
 * and app_ctx.c (contexts and their queues). */
#ifndef TAS_APP_INTERNAL_H
#define TAS_APP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "tas/app.h"

#define EVQ_INITIAL 64   /* event queue slots at first use; it doubles when full */
#define TAS_FP_CORES_MAX (sizeof(((struct tas_info *)0)->queue_owner) / sizeof(uint32_t))
#define REG_FDS 3   /* segment, info page, app eventfd; then one per fast-path core */

struct kb_stats_page;

/* The core's counters (names in app_stats.c). */
enum rx_ctr {
    RXC_BYTES,            /* bytes consumed */
    RXC_REGISTERED,       /* ring bytes registered with zIO */
    RXC_HELD,             /* gauge: consumed bytes not given back yet */
    RXC_HELD_PEAK,        /* the gauge's highest value */
    RXC_RELEASED_HELD,    /* bytes given back after a zIO/Strata check */
    RXC_RELEASE_BUSY,     /* release attempts stopped by a dependent */
    RXC_STRATA_BUSY,      /* ... of which by an undigested Strata reference */
    RXC_FORCED,           /* forced releases (pressure, close, fork) */
    RXC_FORCED_PRESSURE,  /* ... before sleeping with under a quarter free */
    RXC_FORCED_CLOSE,     /* ... on close */
    RXC_FORCED_FORK,      /* ... before fork */
    RXC_FORCED_BYTES,     /* bytes given back by them */
    RXC_DIGESTS,          /* strata_digest_self calls they made */
    RXC_PRESSURE_DIGESTS, /* ... of which before forcing under pressure */
    RXC_DIGEST_KICKS,     /* background digests started with half a ring held */
    RXC_BUMPS,            /* rx_bump messages posted */
    RXC_COPIES,           /* copies out of the ring (reads) */
    RXC_COPIES_SMALL,     /* ... below zIO's threshold */
    RXC_COPIES_CONTINUED, /* ... continuing the previous one (a copy run) */
    RXC_PINNED,           /* threads moved to their fast-path core's CPU (app_pin.c) */
    RXC_SHIM,             /* the shim's counters (enum tas_shim_counter) from here */
    RXC_N = RXC_SHIM + TAS_SHIM_N
};

/* One context: its shared descriptor, its queues and its wake-up socket. */
struct app_ctx {
    struct tas_ctx_shm *shm;
    struct tas_ctxq_hdr *rxh, *txh;
    struct tas_arx *rx_slots;
    struct tas_atx *tx_slots;
    uint32_t queue;                    /* copied at map time, bounded */
    int ev_fd;
};

struct tas_app {
    int sock;
    int seg_fd, info_fd;
    int core_fd[TAS_FP_CORES_MAX];     /* wake-up socket of each fast-path core */
    unsigned ncores;
    uint8_t *base;
    uint64_t size;
    uint64_t seg_off;                  /* the segment's offset in seg_fd */
    bool strata_mapped;                /* registered with libstrata's strata_nvm_map */
    bool lost;                         /* the daemon closed the control socket */
    bool ctl_kicked;                   /* the socket was seen readable: look */
    uint32_t ctl_seen;                 /* the header's ctl_sent when last looked */
    const struct tas_info *info;
    struct app_ctx ctx[TAS_MAX_CTX];   /* ctx[0] is made at registration */
    unsigned nctx;
    uint32_t next_req;
    uint32_t flow_rx_size, flow_tx_size;  /* every flow's buffers (REGISTER reply) */
    struct tas_ctl_msg *evq;           /* events received while waiting for a reply: */
    unsigned ev_cap, ev_head, ev_count; /* a ring that grows, never drops */
    struct tas_rx *held;               /* flows holding consumed bytes */
    uint64_t *ctr[RXC_N];              /* counters: ctr_local or the stats page */
    uint64_t ctr_local[RXC_N];
    struct kb_stats_page *stats;       /* published page, or NULL */
};

static inline void rx_count(struct tas_app *a, enum rx_ctr c, uint64_t n)
{
    __atomic_fetch_add(a->ctr[c], n, __ATOMIC_RELAXED);
}

/* app_ctl.c: one control message each way (fds: received descriptors). */
int app_send_msg(struct tas_app *a, const struct tas_ctl_msg *m);
int app_recv_msg(struct tas_app *a, struct tas_ctl_msg *m, int *fds, int nfds);
int app_queue_event(struct tas_app *a, const struct tas_ctl_msg *m); /* 0 or -ENOMEM */
/* A request and its reply, with the descriptors the reply carries. */
int app_request_fds(struct tas_app *a, struct tas_ctl_msg *m, int *fds, int nfds);

/* app_stats.c: point every counter at ctr_local. */
void app_stats_init(struct tas_app *a);
void app_stats_close(struct tas_app *a);   /* unmap (at detach) */

/* app_orp.c: the zIO and Strata entry points (docs/orp-contract.md), looked
 * up once with dlsym; NULL when the library is not loaded. */
struct orp_api {
    int (*zio_register)(void *, size_t, unsigned);
    int (*zio_release)(void *, size_t);
    int (*zio_try_release)(void *, size_t);      /* zio_release_if_unshared */
    void *(*zio_copy_continued)(void *, const void *, size_t, size_t);
    int (*strata_busy)(const void *, size_t);    /* strata_ref_busy */
    int64_t (*strata_digest)(void);              /* strata_digest_self */
    int (*strata_kick)(void);                    /* strata_digest_kick */
    size_t zio_threshold;                        /* ZIO_THRESHOLD, as libzio reads it */
    void *(*plain_memcpy)(void *, const void *, size_t);   /* libc's, past libzio */
};
const struct orp_api *orp_api(void);


/* app_ctx.c: bind context slot i to the descriptor at ctx_off (0 or -errno). */
int app_ctx_map(struct tas_app *a, unsigned i, uint64_t ctx_off, int ev_fd);
/* Empty a wake-up socket (the daemon sends datagrams to it). */
void app_drain_wakeups(int fd);

#endif
