/* libtas core: the control socket to the daemon: messages (with passed
 * descriptors), requests that wait for their reply, and the events that
 * arrive meanwhile, queued for tas_app_event.  Below app.c and app_ctx.c. */
#define _GNU_SOURCE
#include "app_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int app_recv_msg(struct tas_app *a, struct tas_ctl_msg *m, int *fds, int nfds)
{
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    char cbuf[CMSG_SPACE(sizeof(int) * (REG_FDS + TAS_FP_CORES_MAX))];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t r = recvmsg(a->sock, &mh, MSG_CMSG_CLOEXEC);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) {
        a->lost = true;        /* the daemon closed us (stopped, killed, or a per-user limit) */
        return -ECONNRESET;
    }
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

int app_send_msg(struct tas_app *a, const struct tas_ctl_msg *m)
{
    ssize_t r = send(a->sock, m, sizeof(*m), MSG_NOSIGNAL);
    if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
        a->lost = true;
    return r == (ssize_t)sizeof(*m) ? 0 : -errno;
}

static int evq_grow(struct tas_app *a)
{
    unsigned cap = a->ev_cap ? a->ev_cap * 2 : EVQ_INITIAL;
    struct tas_ctl_msg *q = malloc(cap * sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < a->ev_count; i++)
        q[i] = a->evq[(a->ev_head + i) % a->ev_cap];
    free(a->evq);
    a->evq = q;
    a->ev_cap = cap;
    a->ev_head = 0;
    return 0;
}

/* Events that arrive while we wait for a reply are kept for tas_app_event,
 * never dropped: a lost CONN_OPENED or NEWCONN hangs the connect or accept
 * that waits for it.  The daemon sends them only for what the app asked for
 * (connects, listener backlogs), so the queue stays bounded by that. */
int app_queue_event(struct tas_app *a, const struct tas_ctl_msg *m)
{
    if (a->ev_count == a->ev_cap) {
        int r = evq_grow(a);
        if (r != 0)
            return r;
    }
    a->evq[(a->ev_head + a->ev_count) % a->ev_cap] = *m;
    a->ev_count++;
    return 0;
}

int app_request_fds(struct tas_app *a, struct tas_ctl_msg *m, int *fds, int nfds)
{
    m->req_id = ++a->next_req;
    int r = app_send_msg(a, m);
    if (r != 0)
        return r;
    uint32_t want = m->req_id;
    for (;;) {
        struct tas_ctl_msg reply;
        r = app_recv_msg(a, &reply, fds, nfds);
        if (r != 0)
            return r;
        if (reply.req_id == want) {
            *m = reply;
            return reply.status;
        }
        r = app_queue_event(a, &reply);
        if (r != 0)
            return r;
    }
}

int tas_app_ctl_pending(const struct tas_app *a)
{
    const struct tas_seg_hdr *h = (const struct tas_seg_hdr *)a->base;
    return a->ev_count > 0 || a->ctl_kicked ||
           __atomic_load_n(&h->ctl_sent, __ATOMIC_ACQUIRE) != a->ctl_seen;
}

/* The daemon counts what it sends in the segment header (ctl_sent): the
 * socket needs a look only when that moved (include/tas/app.h). */
int tas_app_ctl_maybe(struct tas_app *a)
{
    if (a->ev_count > 0 || a->ctl_kicked) {
        a->ctl_kicked = false;
        return 1;
    }
    const struct tas_seg_hdr *h = (const struct tas_seg_hdr *)a->base;
    uint32_t sent = __atomic_load_n(&h->ctl_sent, __ATOMIC_ACQUIRE);
    if (sent == a->ctl_seen)
        return 0;
    a->ctl_seen = sent;        /* a message sent after this moves it again */
    return 1;
}

void tas_app_ctl_kick(struct tas_app *a)
{
    a->ctl_kicked = true;
}
