/*
 * The application side of TAS (the core of libtas): attach to a daemon,
 * exchange control messages with the slow path, and move payload through
 * the context queues and flow buffers in the app's segment.  Used by the
 * LD_PRELOAD socket shim and, through cffi, by the Python low-level API.
 */
#ifndef TAS_APP_H
#define TAS_APP_H

#include <stdint.h>
#include "tas/shm.h"

/* CDEF-BEGIN */
struct tas_app;

/* Connect to the daemon's socket and register; NULL on failure with a
 * message in err. */
struct tas_app *tas_app_attach(const char *sock_path, char *err, int errlen);
void tas_app_detach(struct tas_app *a);
uint8_t *tas_app_base(struct tas_app *a);
uint64_t tas_app_size(struct tas_app *a);
int tas_app_ctl_fd(struct tas_app *a);
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
/* Next control event (NEWCONN, CONN_CLOSED, or the reply to a request sent
 * with tas_app_send): 1 if one was returned. */
int tas_app_event(struct tas_app *a, struct tas_ctl_msg *out);

/* Contexts (tas/lib/app_ctx.c): each has its own queues, wake-up eventfd
 * and fast-path queue, for one thread each.  Context 0 exists after attach;
 * create returns the new context's index (or -errno).  Flows belong to the
 * context given in their LISTEN/CONNECT message (tas_ctl_msg.ctx). */
int tas_app_ctx_create(struct tas_app *a);
int tas_app_ctx_count(struct tas_app *a);

/* Data path: take notifications; post consumed/appended bytes.  The plain
 * forms use context 0. */
int tas_app_poll(struct tas_app *a, struct tas_arx *out, int max);
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
/* CDEF-END */

#endif
