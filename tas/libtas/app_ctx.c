/*
 * libtas core: contexts.  A context is a pair of queues in the app's segment
 * (notifications from the fast path, commands to it), a wake-up eventfd and
 * a fast-path queue, so that each thread of an app can move data without
 * sharing a queue with the others, served by whichever core owns its queue.
 * Context 0 is made at registration; tas_app_ctx_create adds more.  Every
 * queue is single-producer/single-consumer: one thread per context.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app_internal.h"

int app_ctx_map(struct tas_app *a, unsigned i, uint64_t ctx_off, int ev_fd)
{
    if (i >= TAS_MAX_CTX || ctx_off + sizeof(struct tas_ctx_shm) > a->size)
        return -EPROTO;
    struct tas_ctx_shm *shm = (struct tas_ctx_shm *)(a->base + ctx_off);
    uint64_t rx_end = shm->rxq_off + sizeof(struct tas_ctxq_hdr) +
                      (uint64_t)TAS_CTXQ_ENTRIES * sizeof(struct tas_arx);
    uint64_t tx_end = shm->txq_off + sizeof(struct tas_ctxq_hdr) +
                      (uint64_t)TAS_CTXQ_ENTRIES * sizeof(struct tas_atx);
    if (shm->rxq_off >= a->size || shm->txq_off >= a->size || rx_end > a->size ||
        tx_end > a->size)
        return -EPROTO;
    struct tas_ctxq_hdr *rxh = (struct tas_ctxq_hdr *)(a->base + shm->rxq_off);
    struct tas_ctxq_hdr *txh = (struct tas_ctxq_hdr *)(a->base + shm->txq_off);
    a->ctx[i] = (struct app_ctx){.shm = shm, .ev_fd = ev_fd, .rxh = rxh, .txh = txh,
                                 .rx_slots = (struct tas_arx *)(rxh + 1),
                                 .tx_slots = (struct tas_atx *)(txh + 1),
                                 .queue = shm->queue % TAS_FP_CORES_MAX};
    if (i + 1 > a->nctx)
        a->nctx = i + 1;
    return 0;
}

int tas_app_ctx_create(struct tas_app *a)
{
    if (a->nctx >= TAS_MAX_CTX)
        return -EMFILE;
    struct tas_ctl_msg m = {.type = TAS_CTL_CTX_CREATE};
    int fd = -1;
    int r = app_request_fds(a, &m, &fd, 1);
    if (r == 0 && (fd < 0 || m.ctx != a->nctx))
        r = -EPROTO;
    if (r == 0)
        r = app_ctx_map(a, m.ctx, m.rx_off, fd);
    if (r != 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    return (int)m.ctx;
}

int tas_app_ctx_count(struct tas_app *a)
{
    return (int)a->nctx;
}

int tas_app_ev_fd(struct tas_app *a)
{
    return a->ctx[0].ev_fd;
}

void tas_app_clear_wake(struct tas_app *a)
{
    app_drain_wakeups(a->ctx[0].ev_fd);
}

static struct app_ctx *ctx_of(struct tas_app *a, int ctx)
{
    return ctx >= 0 && (unsigned)ctx < a->nctx ? &a->ctx[ctx] : NULL;
}

/* The queues (include/tas/shm.h): we consume notifications and produce
 * commands; each index is written by one side only. */
#define CTXQ_MASK (TAS_CTXQ_ENTRIES - 1u)

static bool rxq_empty(const struct app_ctx *c)
{
    return __atomic_load_n(&c->rxh->prod, __ATOMIC_ACQUIRE) == c->rxh->cons;
}

int tas_app_poll_ctx(struct tas_app *a, int ctx, struct tas_arx *out, int max)
{
    struct app_ctx *c = ctx_of(a, ctx);
    if (c == NULL || max < 0)
        return -EINVAL;
    uint32_t cons = c->rxh->cons;
    uint32_t n = __atomic_load_n(&c->rxh->prod, __ATOMIC_ACQUIRE) - cons;
    if (n > TAS_CTXQ_ENTRIES)
        return -EPROTO;
    if (n > (uint32_t)max)
        n = (uint32_t)max;
    for (uint32_t k = 0; k < n; k++)
        out[k] = c->rx_slots[(cons + k) & CTXQ_MASK];
    __atomic_store_n(&c->rxh->cons, cons + n, __ATOMIC_RELEASE);
    return (int)n;
}

static int txq_push(struct app_ctx *c, const struct tas_atx *e)
{
    uint32_t prod = c->txh->prod;
    if (prod - __atomic_load_n(&c->txh->cons, __ATOMIC_ACQUIRE) >= TAS_CTXQ_ENTRIES)
        return -ENOBUFS;
    c->tx_slots[prod & CTXQ_MASK] = *e;
    __atomic_store_n(&c->txh->prod, prod + 1, __ATOMIC_RELEASE);
    return 0;
}

int tas_app_pending(struct tas_app *a)
{
    return a->ev_count > 0 || !rxq_empty(&a->ctx[0]);
}

/* Up to 64 wake-up datagrams, WAKE_BATCH a system call (one recv each,
 * the last failing with EAGAIN, was two calls for the usual single one). */
#define WAKE_BATCH 16

void app_drain_wakeups(int fd)
{
    char buf[WAKE_BATCH][16];
    struct iovec iov[WAKE_BATCH];
    struct mmsghdr mm[WAKE_BATCH];
    for (int i = 0; i < WAKE_BATCH; i++) {
        iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = sizeof(buf[i])};
        mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    for (int round = 0; round < 64 / WAKE_BATCH; round++)
        if (recvmmsg(fd, mm, WAKE_BATCH, MSG_DONTWAIT, NULL) < WAKE_BATCH)
            break;
}

int tas_app_poll(struct tas_app *a, struct tas_arx *out, int max)
{
    return tas_app_poll_ctx(a, 0, out, max);
}

/* Wake the core serving the context's queue if it sleeps.  The owner may
 * change (core scaling) right after we read it: a switched-off core that is
 * woken passes the wake-up on, and a new owner re-checks its queues after
 * taking them over, so no command is left unserved. */
static void wake_queue_owner(struct tas_app *a, const struct app_ctx *c, bool always)
{
    uint32_t owner = __atomic_load_n(&a->info->queue_owner[c->queue], __ATOMIC_SEQ_CST);
    if (owner >= a->ncores)
        owner = 0;
    if (always || __atomic_load_n(&a->info->core_sleeping[owner], __ATOMIC_SEQ_CST)) {
        /* EAGAIN: wake-ups are queued already, the core will run. */
        char one = 1;
        ssize_t w = send(a->core_fd[owner], &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
    }
}

static int post(struct tas_app *a, struct app_ctx *c, const struct tas_atx *e)
{
    while (txq_push(c, e) != 0) {
        /* The fast path drains this queue continuously; wait for room. */
        wake_queue_owner(a, c, true);
        usleep(10);
    }
    wake_queue_owner(a, c, false);
    return 0;
}

int tas_app_post_ctx(struct tas_app *a, int ctx, uint32_t flow_id, uint32_t rx_bump,
                     uint32_t tx_bump, uint16_t flags)
{
    struct app_ctx *c = ctx_of(a, ctx);
    if (c == NULL)
        return -EINVAL;
    struct tas_atx e = {.type = TAS_ATX_CONNUPDATE, .flags = flags, .flow_id = flow_id,
                        .rx_bump = rx_bump, .tx_bump = tx_bump};
    return post(a, c, &e);
}

int tas_app_connect(struct tas_app *a, uint32_t remote_ip, uint16_t remote_port,
                    uint32_t *req_id)
{
    *req_id = ++a->next_req;      /* the control messages' counter: ids never clash */
    struct tas_atx e = {.type = TAS_ATX_CONNECT, .flow_id = *req_id, .rx_bump = remote_ip,
                        .tx_bump = remote_port};
    return post(a, &a->ctx[0], &e);
}

int tas_app_post(struct tas_app *a, uint32_t flow_id, uint32_t rx_bump, uint32_t tx_bump,
                 uint16_t flags)
{
    return tas_app_post_ctx(a, 0, flow_id, rx_bump, tx_bump, flags);
}

/* Sleep until a notification on one of contexts [first, last) or a control
 * message: announce sleep, look once more, then block on the sockets the
 * fast path writes while we are marked sleeping. */
static int wait_range(struct tas_app *a, unsigned first, unsigned last, int timeout_ms)
{
    struct pollfd p[TAS_MAX_CTX + 1];
    unsigned n = 0;
    bool ready = a->ev_count > 0;
    for (unsigned i = first; i < last; i++) {
        __atomic_store_n(&a->ctx[i].shm->app_sleeping, 1, __ATOMIC_SEQ_CST);
        ready = ready || !rxq_empty(&a->ctx[i]);
        p[n++] = (struct pollfd){.fd = a->ctx[i].ev_fd, .events = POLLIN};
    }
    p[n++] = (struct pollfd){.fd = a->sock, .events = POLLIN};
    int r = 1;
    if (!ready) {
        r = poll(p, n, timeout_ms);
        for (unsigned i = 0; r > 0 && i + 1 < n; i++)
            if (p[i].revents & POLLIN)
                app_drain_wakeups(p[i].fd);
        if (r > 0 && p[n - 1].revents != 0)
            tas_app_ctl_kick(a);
    }
    for (unsigned i = first; i < last; i++)
        __atomic_store_n(&a->ctx[i].shm->app_sleeping, 0, __ATOMIC_SEQ_CST);
    return r;
}

int tas_app_wait_ctx(struct tas_app *a, int ctx, int timeout_ms)
{
    if (ctx_of(a, ctx) == NULL)
        return -EINVAL;
    return wait_range(a, (unsigned)ctx, (unsigned)ctx + 1, timeout_ms);
}

int tas_app_wait(struct tas_app *a, int timeout_ms)
{
    return tas_app_wait_ctx(a, 0, timeout_ms);
}

int tas_app_wait_all(struct tas_app *a, int timeout_ms)
{
    return wait_range(a, 0, a->nctx, timeout_ms);
}
