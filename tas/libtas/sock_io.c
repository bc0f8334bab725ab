/* Payload through the flow buffers (the core's struct tas_rx / tas_tx):
 * the read and write families. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "interpose.h"

static ssize_t fail(int e)
{
    errno = e;
    return -1;
}

/* Whether this call may block (1/0), or -errno.  On a socket not (yet)
 * connected, as on Linux: wait for a pending handshake (EAGAIN if
 * non-blocking), report a failed one's error, else ENOTCONN. */
static int io_start(struct lt_sock *s, int flags)
{
    int block = !s->nonblock && !(flags & MSG_DONTWAIT);
    if (s->kind == LT_CONN)
        return block;
    lt_lock();
    int r = lt_connect_wait_io(s, block);
    lt_unlock();
    return r < 0 ? r : block;
}

/* With the lock held: 1 once bytes or end of stream are there, else -errno. */
static int wait_readable(struct lt_sock *s, int block, int64_t deadline)
{
    struct lt_flow *f = s->flow;
    for (;;) {
        lt_progress();
        if (tas_rx_ready(&f->rx) > 0 || f->rx_fin || s->shut_rd)
            return 1;
        if (f->reset)
            return -ECONNRESET;
        if (!block)
            lt_check_daemon();
        if (lt_daemon_lost())  /* nothing will come (a non-blocking loop got EAGAIN) */
            return -ENETDOWN;
        if (!block)
            return -EAGAIN;
        int w = lt_wait_call(NULL, 0, deadline);
        if (w < 0)
            return w;
    }
}

ssize_t lt_recv_iov(struct lt_sock *s, const struct iovec *iov, int n, int flags)
{
    /* TAS keeps no urgent data apart: Linux's answer when there is none
     * (MSG_OOB used to read, and take, the ordinary bytes) */
    if (flags & MSG_OOB)
        return fail(EINVAL);
    int block = io_start(s, flags);
    if (block < 0)
        return fail(-block);
    struct lt_flow *f = s->flow;
    int peek = (flags & MSG_PEEK) != 0;
    size_t got = 0;
    int64_t deadline = block ? lt_deadline(s->rcvtimeo_us) : -1;   /* SO_RCVTIMEO */
    lt_lock();
    for (int i = 0; i < n; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            /* After the first bytes only MSG_WAITALL keeps blocking. */
            int r = wait_readable(s, block && (got == 0 || (flags & MSG_WAITALL)), deadline);
            uint32_t ready = tas_rx_ready(&f->rx);
            if (r < 0 || ready == 0 || s->shut_rd) {
                lt_unlock();
                return got > 0 || r > 0 ? (ssize_t)got : fail(-r);
            }
            /* a peek reads on from what it has copied so far */
            uint32_t skip = peek ? (uint32_t)got : 0;
            size_t want = iov[i].iov_len - done;
            uint32_t k = tas_rx_copy(lt_app, &f->rx, skip, (uint8_t *)iov[i].iov_base + done,
                                     want > UINT32_MAX ? UINT32_MAX : (uint32_t)want);
            done += k;
            got += k;
            if (!peek) {
                tas_rx_consume(lt_app, &f->rx, k);
                tas_rx_release(lt_app, &f->rx, 0);
            } else if (skip + k == ready) {
                lt_unlock();
                return (ssize_t)got;
            }
        }
    }
    lt_unlock();
    return (ssize_t)got;
}

ssize_t lt_send_iov(struct lt_sock *s, const struct iovec *iov, int n, int flags)
{
    /* TAS sends no urgent data: refused, not sent in line (the peer read
     * a byte a Linux sender would have taken out of the stream) */
    if (flags & MSG_OOB)
        return fail(EOPNOTSUPP);
    int block = io_start(s, flags);
    if (block < 0)
        return fail(-block);
    struct lt_flow *f = s->flow;
    size_t sent = 0;
    uint32_t unposted = 0;
    int err = 0;
    int64_t deadline = block ? lt_deadline(s->sndtimeo_us) : -1;   /* SO_SNDTIMEO */
    lt_lock();
    /* A message from the daemon may say the connection is gone: reset, or
     * taken over by a process we forked.  Bytes written into our ring after
     * that would be reported sent and never go out. */
    if (tas_app_ctl_pending(lt_app))
        lt_progress();
    /* The daemon is gone: bytes put in the ring would be reported sent
     * and go nowhere. */
    lt_check_daemon();
    if (lt_daemon_lost())
        err = ENETDOWN;
    for (int i = 0; i < n && err == 0; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            if (f->tx.free == 0 || f->reset)
                lt_progress();
            if (s->shut_wr || f->reset) {
                err = s->shut_wr ? EPIPE : ECONNRESET;
                break;
            }
            if (f->tx.free == 0) {
                if (unposted > 0)
                    tas_app_post(lt_app, f->id, 0, unposted, 0);
                unposted = 0;
                if (!block) {
                    err = EAGAIN;
                    break;
                }
                int w = lt_wait_call(NULL, 0, deadline);
                if (w < 0) {
                    err = -w;
                    break;
                }
                continue;
            }
            size_t want = iov[i].iov_len - done;
            uint32_t k = tas_tx_append(lt_app, &f->tx, (const uint8_t *)iov[i].iov_base + done,
                                       want > UINT32_MAX ? UINT32_MAX : (uint32_t)want);
            unposted += k;
            done += k;
            sent += k;
        }
    }
    if (unposted > 0)
        tas_app_post(lt_app, f->id, 0, unposted, 0);
    if (sent == 0 && err == 0 && (s->shut_wr || f->reset))   /* 0 bytes asked: */
        err = s->shut_wr ? EPIPE : ECONNRESET;             /* Linux checks first */
    lt_unlock();
    if (sent > 0 || err == 0)  /* 0: nothing asked (a write of 0 bytes, as Linux) */
        return (ssize_t)sent;
    if (err == EPIPE && !(flags & MSG_NOSIGNAL))
        raise(SIGPIPE);
    return fail(err);
}
