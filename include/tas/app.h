/*
 * The application side of TAS (the core of libtas): attach to a daemon,
 * exchange control messages with the slow path, and move payload through
 * the context queues and flow buffers in the app's segment.  Used by the
 * LD_PRELOAD socket shim and, through cffi, by the Python low-level API.
 */
#ifndef TAS_APP_H
#define TAS_APP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "tas/shm.h"

/* CDEF-BEGIN */
struct tas_app;

/* Connect to the daemon's socket and register; NULL on failure with a
 * message in err. */
struct tas_app *tas_app_attach(const char *sock_path, char *err, int errlen);
void tas_app_detach(struct tas_app *a);
/* 1 when the app's segment is NVM that this process's libstrata registered
 * (strata_nvm_map): ORP can log received bytes by reference. */
int tas_app_nvm_mapped(const struct tas_app *a);
uint8_t *tas_app_base(struct tas_app *a);
uint64_t tas_app_size(struct tas_app *a);
int tas_app_ctl_fd(struct tas_app *a);
/* The attachment's own descriptors (control socket, segment, wake-up
 * sockets): up to max of them into out; returns how many. */
int tas_app_fds(const struct tas_app *a, int *out, int max);
/* 1 once the daemon closed our control socket (stopped or killed): nothing
 * will come from it any more. */
int tas_app_lost(const struct tas_app *a);
/* Context 0's wake-up socket (readable when the daemon woke us); after a
 * wake-up, tas_app_clear_wake empties it. */
int tas_app_ev_fd(struct tas_app *a);
void tas_app_clear_wake(struct tas_app *a);

/* Send a request and wait for the reply with its req_id (events arriving
 * meanwhile are queued for tas_app_event).  Returns the reply's status. */
int tas_app_request(struct tas_app *a, struct tas_ctl_msg *msg);
/* Send a request without waiting (non-blocking connect): msg->req_id is
 * set, and the reply carrying it arrives later through tas_app_event.
 * 0 or -errno. */
int tas_app_send(struct tas_app *a, struct tas_ctl_msg *msg);
/* connect() through the fast path (TAS_ATX_CONNECT on context 0): *req_id
 * is set, and the outcome arrives as a TAS_ARX_OPENED entry carrying it or,
 * if the fast path leaves it to the slow path, as a CONN_OPENED event
 * (tas_app_event).  0 or -errno. */
int tas_app_connect(struct tas_app *a, uint32_t remote_ip, uint16_t remote_port,
                    uint32_t *req_id);
/* The buffer sizes of every flow (a TAS_ARX_OPENED's). */
void tas_app_flow_sizes(const struct tas_app *a, uint32_t *rx_size, uint32_t *tx_size);
/* Next control event (NEWCONN, CONN_CLOSED, or the reply to a request sent
 * with tas_app_send): 1 if one was returned. */
int tas_app_event(struct tas_app *a, struct tas_ctl_msg *out);
/* Whether tas_app_event may have something: events queued, a kick, or the
 * daemon's count of messages sent (the segment header's ctl_sent) moved
 * since the last call.  No system call: a caller that polls for events
 * often asks this first instead of having tas_app_event poll the socket.
 * One that saw the socket readable (a message, or EOF when the daemon is
 * gone, which no count shows) calls tas_app_ctl_kick first. */
int tas_app_ctl_maybe(struct tas_app *a);
/* The same question without taking the answer (a later tas_app_ctl_maybe
 * still says 1): has the daemon sent anything not read yet? */
int tas_app_ctl_pending(const struct tas_app *a);
void tas_app_ctl_kick(struct tas_app *a);

/* Contexts (tas/libtas/app_ctx.c): each has its own queues, wake-up eventfd
 * and fast-path queue, for one thread each.  Context 0 exists after attach;
 * create returns the new context's index (or -errno).  Flows belong to the
 * context given in their LISTEN/CONNECT message (tas_ctl_msg.ctx). */
int tas_app_ctx_create(struct tas_app *a);
int tas_app_ctx_count(struct tas_app *a);

/* Data path: take notifications; post consumed/appended bytes.  The plain
 * forms use context 0. */
int tas_app_poll(struct tas_app *a, struct tas_arx *out, int max);
/* Run the calling thread on the CPU of the fast-path core serving context 0
 * if the daemon asks apps to (fastpath.pin_apps) and the thread may run
 * there: the CPU, or -1 if not asked, or -errno (-EPERM: the thread's CPU
 * set excludes it; -ENOENT: the core's CPU is not known yet). */
int tas_app_pin_thread(struct tas_app *a);
/* Non-zero if context 0 has notifications or control events queued (no
 * system call: for spinning before a wait). */
int tas_app_pending(struct tas_app *a);
int tas_app_post(struct tas_app *a, uint32_t flow_id, uint32_t rx_bump, uint32_t tx_bump,
                 uint16_t flags);
int tas_app_poll_ctx(struct tas_app *a, int ctx, struct tas_arx *out, int max);
int tas_app_post_ctx(struct tas_app *a, int ctx, uint32_t flow_id, uint32_t rx_bump,
                     uint32_t tx_bump, uint16_t flags);
/* Block until a notification or control message may be there (or timeout):
 * on context 0, on one context, or on all of them. */
int tas_app_wait(struct tas_app *a, int timeout_ms);
int tas_app_wait_ctx(struct tas_app *a, int ctx, int timeout_ms);
int tas_app_wait_all(struct tas_app *a, int timeout_ms);

/* Received bytes of one flow (tas/libtas/app_rx.c): the one path the socket
 * shim and tas/app.py share.  Positions are stream byte counts (64-bit, so
 * they never wrap); a count maps to ring position count % size.
 *   freed <= read <= seen <= freed + size
 * [freed, read) is consumed but held: not yet given back to the window.
 * With zIO loaded (dlsym at first use), a copy of at least zIO's threshold
 * first registers the newly received whole ring pages as originals
 * (ZIO_ORIG_NVM), so the copy is elided; consumed pages are then held until
 * zIO and Strata no longer depend on them (tas/libtas/app_rx_release.c).
 * Without zIO every consumed byte is given back at once. */
struct tas_rx {
    uint32_t flow_id;
    int32_t ctx;                 /* context whose queue carries rx_bump */
    uint32_t off, size;          /* ring: segment offset and length */
    uint64_t seen;               /* bytes the fast path delivered */
    uint64_t read;               /* bytes consumed by the application */
    uint64_t freed;              /* bytes given back (rx_bump posted) */
    uint64_t reg_lo, reg_hi;     /* pages that may be zIO originals (empty: lo == hi) */
    int32_t no_zio;              /* ring not page-aligned: never register */
    int32_t held_listed;         /* on the app's list of flows holding bytes */
    struct tas_rx *held_prev, *held_next;
    /* the copy run: the last copies went to contiguous memory from
     * contiguous stream bytes, ending at stream position run_pos and
     * address run_dst (zio_copy_continued may elide their pages together) */
    uint64_t run_pos, run_len;
    uintptr_t run_dst;
};

/* Set the ring of a flow (counters untouched: bytes may have arrived before
 * the accept that names the flow).  A zeroed struct is a valid start. */
void tas_rx_open(struct tas_app *a, struct tas_rx *r, uint32_t flow_id, int ctx,
                 uint32_t off, uint32_t size);
/* The fast path delivered n more bytes (tas_arx.rx_bump). */
void tas_rx_arrived(struct tas_rx *r, uint32_t n);
/* Bytes received and not yet consumed. */
uint32_t tas_rx_ready(const struct tas_rx *r);
/* Up to 2 iovecs over the ring for the ready bytes [skip, skip+len);
 * returns the count (0 when nothing is there). */
int tas_rx_peek(struct tas_app *a, const struct tas_rx *r, uint32_t skip, uint32_t len,
                struct iovec *iov);
/* Copy ready bytes [skip, skip+len) to buf (not consumed); returns the count. */
uint32_t tas_rx_copy(struct tas_app *a, struct tas_rx *r, uint32_t skip, void *buf,
                     uint32_t len);
/* Move the read position n bytes on. */
void tas_rx_consume(struct tas_app *a, struct tas_rx *r, uint32_t n);
/* Give consumed bytes back to the window: whatever nothing depends on (FIFO,
 * whole pages while zIO is loaded); force: everything consumed (Strata
 * digests its log first, zIO fills dependents).  Returns bytes given back. */
uint32_t tas_rx_release(struct tas_app *a, struct tas_rx *r, int force);
/* The flow is closing: force the release and forget it. */
void tas_rx_close(struct tas_app *a, struct tas_rx *r);
/* About to sleep: release what can go, and force it for every flow whose
 * free space is below a quarter of its ring (so the window never stalls). */
void tas_app_rx_before_sleep(struct tas_app *a);
/* Force the release on every flow (before fork; counted as such). */
void tas_app_rx_release_all(struct tas_app *a);

/* Bytes to send on a flow (tas/libtas/app_tx.c): the ring copy both users
 * share.  free grows with tas_arx.tx_bump (acknowledged bytes). */
struct tas_tx {
    uint32_t off, size;          /* ring: segment offset and length */
    uint32_t head;               /* ring position of the next byte appended */
    uint32_t free;               /* room left */
};
void tas_tx_open(struct tas_tx *t, uint32_t off, uint32_t size);
/* Append up to len bytes of buf; returns the count, which the caller posts
 * as tx_bump (one post may cover several appends). */
uint32_t tas_tx_append(struct tas_app *a, struct tas_tx *t, const void *buf, uint32_t len);

/* Publish the core's counters as the stats page kbstats.libtas.<instance>
 * (0 or -errno); tas_app_stats_unlink removes its file. */
int tas_app_stats_publish(struct tas_app *a, const char *instance);
/* What the socket shim counts on the app's stats page (libtas). */
enum tas_shim_counter {
    TAS_SHIM_SENDFILE_CALLS,     /* sendfile() calls on TAS sockets */
    TAS_SHIM_SENDFILE_BYTES,     /* ... bytes they sent */
    TAS_SHIM_TO_KERNEL,          /* sockets moved to the kernel's stack: a connect to an
                                    address TAS does not reach (loopback, another
                                    network), or IPv6 proper */
    TAS_SHIM_KERNEL_TWINS,       /* listeners with a kernel twin (listen_kernel.c) */
    TAS_SHIM_KERNEL_ACCEPTS,     /* ... connections accepted from it */
    TAS_SHIM_CLAIMS,             /* inherited connections a forked child took over */
    TAS_SHIM_CLAIMS_FAILED,      /* ... that it could not (they stay unconnected) */
    TAS_SHIM_CLOSES_FORKED,      /* closes that leave the FIN to the children */
    TAS_SHIM_WAKEUPS_LATE,       /* epoll waits that slept a whole slice (20 ms) while
                                    one of their sockets was ready: a lost wake-up */
    TAS_SHIM_N
};
void tas_app_count(struct tas_app *a, enum tas_shim_counter c, uint64_t n);
/* 1 if TAS carries a connection to ip (host byte order): the daemon's subnet,
 * loopback and the daemon's own address excluded (TAS has no router and no
 * loopback).  tas_app_ip: the daemon's address. */
int tas_app_carries(const struct tas_app *a, uint32_t ip);
uint32_t tas_app_ip(const struct tas_app *a);
void tas_app_stats_unlink(const char *instance);
/* CDEF-END */

#endif
