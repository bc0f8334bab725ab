/* libtas core: attach, control messages, context queues (include/tas/app.h). */
#define _GNU_SOURCE
#include "tas/app.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#define EVQ_LEN 256
#define TAS_FP_CORES_MAX (sizeof(((struct tas_info *)0)->queue_owner) / sizeof(uint32_t))
#define REG_FDS 3   /* segment, info page, app eventfd; then one per fast-path core */

struct tas_app {
    int sock;
    int seg_fd, info_fd, ev_fd;
    int core_fd[TAS_FP_CORES_MAX];     /* wake-up eventfd of each fast-path core */
    unsigned ncores;
    uint8_t *base;
    uint64_t size;
    const struct tas_info *info;
    struct tas_ctx_shm *ctx;
    struct rte_ring *rxq, *txq;
    uint32_t next_req;
    struct tas_ctl_msg evq[EVQ_LEN];   /* events received while waiting for a reply */
    unsigned ev_head, ev_count;
};

static int recv_msg(struct tas_app *a, struct tas_ctl_msg *m, int *fds, int nfds)
{
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    char cbuf[CMSG_SPACE(sizeof(int) * (REG_FDS + TAS_FP_CORES_MAX))];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t r = recvmsg(a->sock, &mh, MSG_CMSG_CLOEXEC);
    if (r != (ssize_t)sizeof(*m))
        return r < 0 ? -errno : -EPROTO;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *got = (int *)CMSG_DATA(c);
        for (int i = 0; i < n; i++) {
            if (i < nfds)
                fds[i] = got[i];
            else
                close(got[i]);
        }
    }
    return 0;
}

static int send_msg(struct tas_app *a, const struct tas_ctl_msg *m)
{
    ssize_t r = send(a->sock, m, sizeof(*m), MSG_NOSIGNAL);
    return r == (ssize_t)sizeof(*m) ? 0 : -errno;
}

static void queue_event(struct tas_app *a, const struct tas_ctl_msg *m)
{
    if (a->ev_count == EVQ_LEN)
        return; /* an app this far behind on events has bigger problems */
    a->evq[(a->ev_head + a->ev_count) % EVQ_LEN] = *m;
    a->ev_count++;
}

int tas_app_request(struct tas_app *a, struct tas_ctl_msg *m)
{
    m->req_id = ++a->next_req;
    int r = send_msg(a, m);
    if (r != 0)
        return r;
    uint32_t want = m->req_id;
    for (;;) {
        struct tas_ctl_msg reply;
        r = recv_msg(a, &reply, NULL, 0);
        if (r != 0)
            return r;
        if (reply.req_id == want) {
            *m = reply;
            return reply.status;
        }
        queue_event(a, &reply);
    }
}

int tas_app_send(struct tas_app *a, struct tas_ctl_msg *m)
{
    m->req_id = ++a->next_req;
    return send_msg(a, m);
}

int tas_app_event(struct tas_app *a, struct tas_ctl_msg *out)
{
    if (a->ev_count > 0) {
        *out = a->evq[a->ev_head];
        a->ev_head = (a->ev_head + 1) % EVQ_LEN;
        a->ev_count--;
        return 1;
    }
    struct pollfd p = {.fd = a->sock, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    return recv_msg(a, out, NULL, 0) == 0 ? 1 : 0;
}

static int fail(char *err, int errlen, const char *what, int e)
{
    snprintf(err, (size_t)errlen, "%s: %s", what, strerror(e));
    return -1;
}

static int map_segment(struct tas_app *a, uint64_t size, uint64_t ctx_off, char *err, int errlen)
{
    a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->seg_fd, 0);
    a->info = mmap(NULL, 4096, PROT_READ, MAP_SHARED, a->info_fd, 0);
    if (a->base == MAP_FAILED || a->info == MAP_FAILED)
        return fail(err, errlen, "mapping the TAS segment", errno);
    a->size = size;
    const struct tas_seg_hdr *h = (const struct tas_seg_hdr *)a->base;
    if (h->magic != TAS_SHM_MAGIC || h->version != TAS_SHM_VERSION ||
        a->info->version != TAS_SHM_VERSION || ctx_off + sizeof(*a->ctx) > size) {
        snprintf(err, (size_t)errlen, "TAS segment version %u, this libtas speaks %u",
                 h->version, TAS_SHM_VERSION);
        return -1;
    }
    a->ctx = (struct tas_ctx_shm *)(a->base + ctx_off);
    a->rxq = (struct rte_ring *)(a->base + a->ctx->rxq_off);
    a->txq = (struct rte_ring *)(a->base + a->ctx->txq_off);
    return 0;
}

struct tas_app *tas_app_attach(const char *sock_path, char *err, int errlen)
{
    struct tas_app *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        fail(err, errlen, "libtas", ENOMEM);
        return NULL;
    }
    a->seg_fd = a->info_fd = a->ev_fd = -1;
    for (unsigned i = 0; i < TAS_FP_CORES_MAX; i++)
        a->core_fd[i] = -1;
    a->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (a->sock < 0 || connect(a->sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fail(err, errlen, sock_path, errno);
        goto out;
    }
    struct tas_ctl_msg m = {.type = TAS_CTL_REGISTER, .backlog = TAS_SHM_VERSION,
                            .req_id = ++a->next_req};
    int fds[REG_FDS + TAS_FP_CORES_MAX];
    for (unsigned i = 0; i < REG_FDS + TAS_FP_CORES_MAX; i++)
        fds[i] = -1;
    int r = send_msg(a, &m);
    if (r == 0)
        r = recv_msg(a, &m, fds, REG_FDS + TAS_FP_CORES_MAX);
    if (r == 0 && m.status != 0)
        r = m.status;
    a->seg_fd = fds[0];
    a->info_fd = fds[1];
    a->ev_fd = fds[2];
    for (unsigned i = 0; i < TAS_FP_CORES_MAX && fds[REG_FDS + i] >= 0; i++)
        a->core_fd[a->ncores++] = fds[REG_FDS + i];
    if (r != 0) {
        fail(err, errlen, r == -EPROTO ? "registering with TAS (version mismatch)"
                                       : "registering with TAS", -r);
        goto out;
    }
    if (a->ncores == 0) {
        snprintf(err, (size_t)errlen, "registering with TAS: file descriptors missing");
        goto out;
    }
    if (map_segment(a, m.opaque, m.rx_off, err, errlen) == 0)
        return a;
out:
    tas_app_detach(a);
    return NULL;
}

void tas_app_detach(struct tas_app *a)
{
    if (a == NULL)
        return;
    if (a->base != NULL && a->base != MAP_FAILED)
        munmap(a->base, a->size);
    if (a->info != NULL && a->info != MAP_FAILED)
        munmap((void *)a->info, 4096);
    int fds[] = {a->sock, a->seg_fd, a->info_fd, a->ev_fd};
    for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (unsigned i = 0; i < a->ncores; i++)
        close(a->core_fd[i]);
    free(a);
}

uint8_t *tas_app_base(struct tas_app *a)
{
    return a->base;
}

uint64_t tas_app_size(struct tas_app *a)
{
    return a->size;
}

int tas_app_ctl_fd(struct tas_app *a)
{
    return a->sock;
}

int tas_app_ev_fd(struct tas_app *a)
{
    return a->ev_fd;
}

int tas_app_poll(struct tas_app *a, struct tas_arx *out, int max)
{
    return (int)rte_ring_sc_dequeue_burst_elem(a->rxq, out, sizeof(*out), (unsigned)max, NULL);
}

/* Wake the core serving our queue if it sleeps.  The owner may change
 * (core scaling) right after we read it: a switched-off core that is woken
 * passes the wake-up on, and a new owner re-checks its queues after taking
 * them over, so no command is left unserved. */
static void wake_queue_owner(struct tas_app *a, bool always)
{
    uint32_t owner = __atomic_load_n(&a->info->queue_owner[a->ctx->queue], __ATOMIC_SEQ_CST);
    if (owner >= a->ncores)
        owner = 0;
    if (always || __atomic_load_n(&a->info->core_sleeping[owner], __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t w = write(a->core_fd[owner], &one, sizeof(one));
        (void)w;
    }
}

int tas_app_post(struct tas_app *a, uint32_t flow_id, uint32_t rx_bump, uint32_t tx_bump,
                 uint16_t flags)
{
    struct tas_atx e = {.type = TAS_ATX_CONNUPDATE, .flags = flags, .flow_id = flow_id,
                        .rx_bump = rx_bump, .tx_bump = tx_bump};
    while (rte_ring_sp_enqueue_elem(a->txq, &e, sizeof(e)) != 0) {
        /* The fast path drains this queue continuously; wait for room. */
        wake_queue_owner(a, true);
        usleep(10);
    }
    wake_queue_owner(a, false);
    return 0;
}

int tas_app_wait(struct tas_app *a, int timeout_ms)
{
    __atomic_store_n(&a->ctx->app_sleeping, 1, __ATOMIC_SEQ_CST);
    int r = 1;
    if (rte_ring_empty(a->rxq) && a->ev_count == 0) {
        struct pollfd p[2] = {{.fd = a->ev_fd, .events = POLLIN},
                              {.fd = a->sock, .events = POLLIN}};
        r = poll(p, 2, timeout_ms);
        if (r > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t n = read(a->ev_fd, &v, sizeof(v));
            (void)n;
        }
    }
    __atomic_store_n(&a->ctx->app_sleeping, 0, __ATOMIC_SEQ_CST);
    return r;
}
