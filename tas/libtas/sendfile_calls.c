/*
 * sendfile() to a TAS socket.  To the kernel a TAS socket is only a
 * placeholder descriptor, so its sendfile failed with EINVAL: nginx, whose
 * Debian configuration turns sendfile on, sent the response headers and no
 * body.  Here the file is read through the interposed read family (so a
 * Strata file is read by libstrata) into a per-thread bounce buffer and sent
 * as send() would.  On a non-blocking socket at most what the transmit ring
 * takes at once is read, so no byte is read and then left unsent; bytes a
 * failed send did not take are given back to the file position.
 */
#define _GNU_SOURCE
/* Both sendfile and sendfile64 are defined here: without 64-bit off_t
 * renaming, so that the two names stay two functions. */
#undef _FILE_OFFSET_BITS
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "interpose.h"

#define CHUNK (256u << 10)

static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static void bounce_key_make(void)
{
    pthread_key_create(&bounce_key, free);     /* freed at thread exit */
}

static uint8_t *bounce(void)
{
    pthread_once(&bounce_once, bounce_key_make);
    uint8_t *b = pthread_getspecific(bounce_key);
    if (b == NULL && (b = malloc(CHUNK)) != NULL)
        pthread_setspecific(bounce_key, b);
    return b;
}

/* Bytes the socket takes now without blocking (its free ring space). */
static size_t tx_room(struct lt_sock *s)
{
    lt_lock();
    lt_progress();
    size_t room = s->flow != NULL && !s->flow->reset ? s->flow->tx.free : 0;
    lt_unlock();
    return room;
}

static ssize_t send_file(struct lt_sock *s, int in, off64_t *off, size_t count)
{
    uint8_t *buf = bounce();
    if (buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    /* Connected (or waited for a pending connect) before anything is read:
     * a zero-length send reports ENOTCONN, EAGAIN, a failed connect. */
    struct iovec none = {.iov_base = buf, .iov_len = 0};
    if (s->kind != LT_CONN && lt_send_iov(s, &none, 1, 0) < 0)
        return -1;
    int block = !s->nonblock;
    size_t sent = 0;
    int err = 0;
    while (sent < count) {
        size_t want = count - sent < CHUNK ? count - sent : CHUNK;
        if (!block) {
            size_t room = tx_room(s);
            if (room == 0) {
                err = sent == 0 ? EAGAIN : 0;
                break;
            }
            want = want < room ? want : room;
        }
        ssize_t n = off != NULL ? pread64(in, buf, want, *off) : read(in, buf, want);
        if (n <= 0) {
            err = n < 0 && sent == 0 ? errno : 0;
            break;
        }
        struct iovec v = {.iov_base = buf, .iov_len = (size_t)n};
        ssize_t w = lt_send_iov(s, &v, 1, 0);       /* EPIPE raises SIGPIPE, as Linux */
        int send_err = w < 0 ? errno : 0;
        if (w < 0)
            w = 0;
        if (w < n && off == NULL)
            lseek64(in, w - n, SEEK_CUR);           /* give back what was not sent */
        sent += (size_t)w;
        if (off != NULL)
            *off += w;
        if (w < n) {
            err = sent == 0 ? send_err : 0;
            break;
        }
    }
    if (sent > 0) {
        tas_app_count(lt_app, TAS_SHIM_SENDFILE_CALLS, 1);
        tas_app_count(lt_app, TAS_SHIM_SENDFILE_BYTES, sent);
    }
    if (err != 0) {
        errno = err;
        return -1;
    }
    return (ssize_t)sent;
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
    struct lt_sock *s = lt_sock_hold(out);
    if (s == NULL)
        return REAL(sendfile64)(out, in, off, count);
    return lt_sock_done(s, send_file(s, in, off, count));
}

ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
    struct lt_sock *s = lt_sock_hold(out);
    if (s == NULL)
        return REAL(sendfile)(out, in, off, count);
    off64_t o = off != NULL ? *off : 0;
    ssize_t r = send_file(s, in, off != NULL ? &o : NULL, count);
    if (off != NULL)
        *off = (off_t)o;
    return lt_sock_done(s, r);
}
