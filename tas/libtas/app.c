/* libtas core: attach, control messages, context queues (include/tas/app.h). */
#define _GNU_SOURCE
#include "app_internal.h"

#include <dlfcn.h>
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

int tas_app_request(struct tas_app *a, struct tas_ctl_msg *m)
{
    return app_request_fds(a, m, NULL, 0);
}

int tas_app_send(struct tas_app *a, struct tas_ctl_msg *m)
{
    m->req_id = ++a->next_req;
    return app_send_msg(a, m);
}

int tas_app_event(struct tas_app *a, struct tas_ctl_msg *out)
{
    if (a->ev_count == 0 && a->lost)
        return 0;              /* its socket stays readable (EOF) forever */
    if (a->ev_count > 0) {
        *out = a->evq[a->ev_head];
        a->ev_head = (a->ev_head + 1) % a->ev_cap;
        a->ev_count--;
        return 1;
    }
    struct pollfd p = {.fd = a->sock, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    return app_recv_msg(a, out, NULL, 0) == 0 ? 1 : 0;
}

static int fail(char *err, int errlen, const char *what, int e)
{
    snprintf(err, (size_t)errlen, "%s: %s", what, strerror(e));
    return -1;
}

/* An NVM segment is a slice of the Strata pool: tell libstrata (if this
 * process has it loaded) so writes from the rings can be logged by
 * reference.  Without libstrata, or if it declines, bytes are logged inline. */
static void strata_register(struct tas_app *a)
{
    int (*nvm_map)(int, uint64_t, const void *, size_t) =
        (int (*)(int, uint64_t, const void *, size_t))dlsym(RTLD_DEFAULT, "strata_nvm_map");
    if (nvm_map != NULL)
        a->strata_mapped = nvm_map(a->seg_fd, a->seg_off, a->base, a->size) == 0;
}

int tas_app_carries(const struct tas_app *a, uint32_t ip)
{
    uint32_t p = a->info->prefix_len;
    uint32_t mask = p == 0 ? 0 : p >= 32 ? ~0u : ~0u << (32 - p);
    return (ip >> 24) != 127 && ip != a->info->ip && (ip & mask) == (a->info->ip & mask);
}

void tas_app_flow_sizes(const struct tas_app *a, uint32_t *rx_size, uint32_t *tx_size)
{
    *rx_size = a->flow_rx_size;
    *tx_size = a->flow_tx_size;
}

uint32_t tas_app_ip(const struct tas_app *a)
{
    return a->info->ip;
}

int tas_app_nvm_mapped(const struct tas_app *a)
{
    return a->strata_mapped;
}

static void strata_unregister(struct tas_app *a)
{
    int (*nvm_unmap)(const void *) =
        (int (*)(const void *))dlsym(RTLD_DEFAULT, "strata_nvm_unmap");
    if (a->strata_mapped && nvm_unmap != NULL)
        nvm_unmap(a->base);
    a->strata_mapped = false;
}

static int map_segment(struct tas_app *a, const struct tas_ctl_msg *reply, int ev_fd,
                       char *err, int errlen)
{
    uint64_t size = reply->opaque, ctx_off = reply->rx_off;
    a->seg_off = (uint64_t)reply->tx_off << TAS_REG_OFF_SHIFT;
    a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->seg_fd, (off_t)a->seg_off);
    a->info = mmap(NULL, 4096, PROT_READ, MAP_SHARED, a->info_fd, 0);
    if (a->base == MAP_FAILED || a->info == MAP_FAILED)
        return fail(err, errlen, "mapping the TAS segment", errno);
    a->size = size;
    a->flow_rx_size = reply->rx_size;
    a->flow_tx_size = reply->tx_size;
    const struct tas_seg_hdr *h = (const struct tas_seg_hdr *)a->base;
    if (h->magic != TAS_SHM_MAGIC || h->version != TAS_SHM_VERSION ||
        a->info->version != TAS_SHM_VERSION) {
        snprintf(err, (size_t)errlen, "TAS segment version %u, this libtas speaks %u",
                 h->version, TAS_SHM_VERSION);
        return -1;
    }
    if (reply->flags & TAS_REG_FL_NVM)
        strata_register(a);
    int r = app_ctx_map(a, 0, ctx_off, ev_fd);
    if (r != 0)
        snprintf(err, (size_t)errlen, "TAS segment: bad context descriptor");
    return r;
}

struct tas_app *tas_app_attach(const char *sock_path, char *err, int errlen)
{
    struct tas_app *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        fail(err, errlen, "libtas", ENOMEM);
        return NULL;
    }
    a->seg_fd = a->info_fd = -1;
    app_stats_init(a);
    for (unsigned i = 0; i < TAS_MAX_CTX; i++)
        a->ctx[i].ev_fd = -1;
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
    int r = app_send_msg(a, &m);
    if (r == 0)
        r = app_recv_msg(a, &m, fds, REG_FDS + TAS_FP_CORES_MAX);
    if (r == 0 && m.status != 0)
        r = m.status;
    a->seg_fd = fds[0];
    a->info_fd = fds[1];
    for (unsigned i = 0; i < TAS_FP_CORES_MAX && fds[REG_FDS + i] >= 0; i++)
        a->core_fd[a->ncores++] = fds[REG_FDS + i];
    if (r != 0) {
        bool closed = r == -ECONNRESET || r == -EPIPE;
        fail(err, errlen, r == -EPROTO ? "registering with TAS (version mismatch)"
                          : closed ? "registering with TAS (the daemon closed the connection: "
                                     "per-user limit?)"
                          : "registering with TAS", -r);
        goto out;
    }
    if (a->ncores == 0 || fds[2] < 0) {
        snprintf(err, (size_t)errlen, "registering with TAS: file descriptors missing");
        goto out;
    }
    if (map_segment(a, &m, fds[2], err, errlen) == 0)
        return a;
    if (a->nctx == 0)
        close(fds[2]);
out:
    tas_app_detach(a);
    return NULL;
}

void tas_app_detach(struct tas_app *a)
{
    if (a == NULL)
        return;
    app_stats_close(a);
    if (a->base != NULL && a->base != MAP_FAILED) {
        strata_unregister(a);
        munmap(a->base, a->size);
    }
    if (a->info != NULL && a->info != MAP_FAILED)
        munmap((void *)a->info, 4096);
    int fds[] = {a->sock, a->seg_fd, a->info_fd};
    for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (unsigned i = 0; i < a->nctx; i++)
        close(a->ctx[i].ev_fd);
    for (unsigned i = 0; i < a->ncores; i++)
        close(a->core_fd[i]);
    free(a->evq);
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

int tas_app_fds(const struct tas_app *a, int *out, int max)
{
    int n = 0;
    const int fixed[] = {a->sock, a->seg_fd, a->info_fd};
    for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i] >= 0 && n < max)
            out[n++] = fixed[i];
    for (unsigned i = 0; i < a->nctx && n < max; i++)
        if (a->ctx[i].ev_fd >= 0)
            out[n++] = a->ctx[i].ev_fd;
    for (unsigned i = 0; i < a->ncores && n < max; i++)
        if (a->core_fd[i] >= 0)
            out[n++] = a->core_fd[i];
    return n;
}

int tas_app_ctl_fd(struct tas_app *a)
{
    return a->sock;
}

int tas_app_lost(const struct tas_app *a)
{
    return a->lost;
}
