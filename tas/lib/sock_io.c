/* Payload through the flow buffers: the read and write families. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "interpose.h"

/* Copy n bytes between buf and a circular buffer starting at pos. */
static void ring_copy(uint8_t *ring, uint32_t size, uint32_t pos, uint8_t *buf, size_t n,
                      int into_ring)
{
    size_t first = size - pos < n ? size - pos : n;
    if (into_ring) {
        memcpy(ring + pos, buf, first);
        memcpy(ring, buf + first, n - first);
    } else {
        memcpy(buf, ring + pos, first);
        memcpy(buf + first, ring, n - first);
    }
}

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
static int wait_readable(struct lt_sock *s, int block)
{
    struct lt_flow *f = s->flow;
    for (;;) {
        lt_progress();
        if (f->rx_ready > 0 || f->rx_fin || s->shut_rd)
            return 1;
        if (f->reset)
            return -ECONNRESET;
        if (!block)
            return -EAGAIN;
        if (lt_wait(NULL, 0, -1) < 0)
            return -errno;
    }
}

ssize_t lt_recv_iov(struct lt_sock *s, const struct iovec *iov, int n, int flags)
{
    int block = io_start(s, flags);
    if (block < 0)
        return fail(-block);
    struct lt_flow *f = s->flow;
    size_t got = 0;
    lt_lock();
    uint8_t *rx = tas_app_base(lt_app) + f->rx_off;
    uint32_t tail = f->rx_tail;
    for (int i = 0; i < n; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            /* After the first bytes only MSG_WAITALL keeps blocking. */
            int r = wait_readable(s, block && (got == 0 || (flags & MSG_WAITALL)));
            if (r < 0 || f->rx_ready == 0 || s->shut_rd) {
                lt_unlock();
                return got > 0 || r > 0 ? (ssize_t)got : fail(-r);
            }
            size_t k = iov[i].iov_len - done;
            if (k > f->rx_ready)
                k = f->rx_ready;
            ring_copy(rx, f->rx_size, tail, (uint8_t *)iov[i].iov_base + done, k, 0);
            tail = (uint32_t)((tail + k) % f->rx_size);
            done += k;
            got += k;
            if (!(flags & MSG_PEEK)) {
                f->rx_tail = tail;
                f->rx_ready -= (uint32_t)k;
                tas_app_post(lt_app, f->id, (uint32_t)k, 0, 0);
            } else if (k == f->rx_ready) {
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
    int block = io_start(s, flags);
    if (block < 0)
        return fail(-block);
    struct lt_flow *f = s->flow;
    size_t sent = 0;
    uint32_t unposted = 0;
    int err = 0;
    lt_lock();
    uint8_t *tx = tas_app_base(lt_app) + f->tx_off;
    for (int i = 0; i < n && err == 0; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            if (f->tx_free == 0 || f->reset)
                lt_progress();
            if (s->shut_wr || f->reset) {
                err = s->shut_wr ? EPIPE : ECONNRESET;
                break;
            }
            if (f->tx_free == 0) {
                if (unposted > 0)
                    tas_app_post(lt_app, f->id, 0, unposted, 0);
                unposted = 0;
                if (!block) {
                    err = EAGAIN;
                    break;
                }
                if (lt_wait(NULL, 0, -1) < 0) {
                    err = errno;
                    break;
                }
                continue;
            }
            size_t k = iov[i].iov_len - done;
            if (k > f->tx_free)
                k = f->tx_free;
            ring_copy(tx, f->tx_size, f->tx_head, (uint8_t *)iov[i].iov_base + done, k, 1);
            f->tx_head = (uint32_t)((f->tx_head + k) % f->tx_size);
            f->tx_free -= (uint32_t)k;
            unposted += (uint32_t)k;
            done += k;
            sent += k;
        }
    }
    if (unposted > 0)
        tas_app_post(lt_app, f->id, 0, unposted, 0);
    lt_unlock();
    if (sent > 0)
        return (ssize_t)sent;
    if (err == EPIPE && !(flags & MSG_NOSIGNAL))
        raise(SIGPIPE);
    return fail(err);
}
