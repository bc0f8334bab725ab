/*
 * Input recording and output resolution helpers (dissertation 4.2.1.1 and
 * 4.2.1.3), used by the interposed IO calls and by the explicit API.
 *
 * Input: before the kernel (or a stack) writes into a buffer, every tracked
 * byte there is made ordinary memory (intermediates filled, originals pushed
 * to their dependents), so no system call ever meets an unmapped or
 * write-protected page; afterwards the received whole pages are recorded as
 * an original.  Output: intermediate parts of the buffer are replaced by
 * their originals, so gather IO sends the same bytes without faulting.
 */
#include "zio_internal.h"

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

/* previous input on this thread: lets a read that continues exactly where
 * the last one stopped also claim the partial page between them */
static __thread uintptr_t last_lo, last_end;

/* Descriptors whose last input a stack placed (libtas copies received bytes
 * with zio_copy_continued, which elides what it can and prepares the pages
 * it writes plainly): such an input leaves idle registrations in the buffer
 * alone, where dropping them would only make its elisions register the
 * memory again.  A hint: an input that does fault on an idle page is served
 * by the handler (reg_fault), just more slowly. */
#define PLACED_FDS 65536
static unsigned char placed[PLACED_FDS / 8];

int io_stack_placed(int fd)
{
    return fd >= 0 && fd < PLACED_FDS &&
           (__atomic_load_n(&placed[fd / 8], __ATOMIC_RELAXED) >> (fd % 8) & 1);
}

void io_note_placed(int fd, int by_stack)
{
    if (fd < 0 || fd >= PLACED_FDS || io_stack_placed(fd) == !!by_stack)
        return;
    unsigned char bit = (unsigned char)(1u << (fd % 8));
    if (by_stack)
        __atomic_fetch_or(&placed[fd / 8], bit, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&placed[fd / 8], (unsigned char)~bit, __ATOMIC_RELAXED);
}

void io_before_input(void *buf, size_t len, int keep_idle)
{
    uintptr_t b = (uintptr_t)buf;
    if (len == 0 || (!tab_overlaps(b, b + len) && (keep_idle || !reg_overlaps(b, b + len)) &&
                     !link_overlaps(b, b + len)))
        return;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    track_materialize(b, b + len);
    link_cut(b, b + len);
    if (!keep_idle)
        reg_drop(pg_floor(b), pg_ceil(b + len));   /* the kernel fills fresh pages */
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
}

/* Record what arrived.  Only an input run (one read, or reads continuing one
 * another) whose whole pages reach the threshold is recorded: smaller data
 * can never feed an elided copy, and skipping it keeps small IO free of
 * locking. */
void io_after_input(void *buf, ssize_t got, uintptr_t key)
{
    if (got <= 0)
        return;
    uintptr_t b = (uintptr_t)buf, e = b + (size_t)got;
    int cont = last_end == b && b != 0;
    if (!cont)
        last_lo = b;
    last_end = e;
    uintptr_t lo = pg_ceil(last_lo), hi = pg_floor(e);
    if (hi <= lo || hi - lo < zio_cfg.threshold)
        return;
    fault_handler_start();
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    if (policy_input(key)) {
        /* the whole run, or (when earlier parts are tracked already) this
         * read's pages, extending the original the previous read left */
        uintptr_t own = cont && last_lo <= pg_floor(b) ? pg_floor(b) : pg_ceil(b);
        if (track_add_original(lo, hi, 0, key) == 0 ||
            (own < hi && track_add_original(own, hi, 0, key) == 0))
            ctr_add(C_INPUTS_RECORDED, 1);
    }
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
}

void io_before_inputv(const struct iovec *iov, int cnt, int keep_idle)
{
    for (int i = 0; i < cnt; i++)
        io_before_input(iov[i].iov_base, iov[i].iov_len, keep_idle);
}

void io_after_inputv(const struct iovec *iov, int cnt, ssize_t got, uintptr_t key)
{
    for (int i = 0; i < cnt && got > 0; i++) {
        size_t n = (size_t)got < iov[i].iov_len ? (size_t)got : iov[i].iov_len;
        io_after_input(iov[i].iov_base, (ssize_t)n, key);
        got -= (ssize_t)n;
    }
}

/* ---- output ---------------------------------------------------------
 *
 * An output call of tracked data sends the originals in place of the
 * intermediates.  While that system call runs, another thread may want to
 * overwrite one of those originals (its WP fault, or its own input into the
 * buffer): it must wait until the kernel has taken the bytes, or the old
 * intermediate would go out with new data.  So the substituted originals are
 * pinned for the duration of the call (zio_pins.c), and
 * track_release_originals() waits for overlapping pins.  To make that wait short and deadlock-free, the
 * substituted call never blocks: sockets are written with MSG_DONTWAIT (what
 * does not fit goes out afterwards with the plain blocking call over the
 * materialised buffer), regular files do not block indefinitely, and any
 * other kind of descriptor (pipes, terminals) gets the buffer materialised
 * and the plain call.
 */
/* The address span of the originals that iov[0..k) substitutes for parts of
 * in[0..cnt); empty (lo >= hi) when the buffers hold no intermediate. */
static void substituted_span(const struct iovec *iov, int k, const struct iovec *in, int cnt,
                             uintptr_t *plo, uintptr_t *phi)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int j = 0; j < k; j++) {
        uintptr_t b = (uintptr_t)iov[j].iov_base, e = b + iov[j].iov_len;
        int own = 0;   /* part of the caller's buffers, not a substituted original */
        for (int i = 0; i < cnt && !own; i++)
            own = b >= (uintptr_t)in[i].iov_base && e <= (uintptr_t)in[i].iov_base + in[i].iov_len;
        if (!own) {
            lo = b < lo ? b : lo;
            hi = e > hi ? e : hi;
        }
    }
    *plo = lo;
    *phi = hi;
}


int io_output_tracked(const struct iovec *in, int cnt)
{
    if (zio_mode != ZIO_ELIDE || zio_in_lib)
        return 0;
    for (int i = 0; i < cnt; i++) {
        uintptr_t b = (uintptr_t)in[i].iov_base, e = b + in[i].iov_len;
        if (tab_overlaps(b, e) || link_overlaps(b, e))
            return 1;
    }
    return 0;
}

static void materialize_iov(const struct iovec *in, int cnt)
{
    for (int i = 0; i < cnt; i++)
        track_materialize((uintptr_t)in[i].iov_base, (uintptr_t)in[i].iov_base + in[i].iov_len);
}

/* The gather call that replaces the program's call: pwritev for pwrite,
 * sendmsg on sockets, writev on files (path_ok() said the next shim sees it). */
static ssize_t call(const struct zio_out *how, int sock, const struct iovec *iov, int k, int flags)
{
    static ssize_t (*writev_)(int, const struct iovec *, int);
    static ssize_t (*pwritev_)(int, const struct iovec *, int, off_t);
    static ssize_t (*sendmsg_)(int, const struct msghdr *, int);
    if (!sendmsg_) {
        writev_ = zio_next("writev");
        pwritev_ = zio_next("pwritev");
        sendmsg_ = zio_next("sendmsg");
    }
    if (how->kind == OUT_PWRITE)
        return pwritev_(how->fd, iov, k, how->off);
    if (!sock)
        return writev_(how->fd, iov, k);
    struct msghdr m = { 0 };
    if (how->msg)
        m = *how->msg;
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)k;
    return sendmsg_(how->fd, &m, how->flags | flags);
}

/* Skip the first `done` bytes of in[0..cnt) into out; returns the count. */
static int advance(const struct iovec *in, int cnt, size_t done, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < cnt; i++) {
        if (done >= in[i].iov_len) {
            done -= in[i].iov_len;
            continue;
        }
        out[k].iov_base = (char *)in[i].iov_base + done;
        out[k++].iov_len = in[i].iov_len - done;
        done = 0;
    }
    return k;
}

/* Is the descriptor a socket (1), a regular file (0), or something an
 * output may block on indefinitely (-1)?  Asked before taking zio_lock:
 * libtas answers fstat for its sockets, and no part calls into libtas while
 * holding the zIO lock. */
static int out_target(const struct zio_out *how)
{
    if (how->kind == OUT_SEND)
        return 1;
    if (how->kind == OUT_PWRITE)
        return 0;
    struct stat st;
    if (fstat(how->fd, &st) != 0 || !(S_ISSOCK(st.st_mode) || S_ISREG(st.st_mode)))
        return -1;
    return S_ISSOCK(st.st_mode);
}

/* zio_lock held: in[0..cnt) with intermediates and linked bytes replaced
 * by originals into iov (the linked parts noted in chk); returns the count
 * (-1: too many pieces) and the substituted span. */
static int resolve_out(const struct iovec *in, int cnt, struct iovec *iov, uintptr_t *lo,
                       uintptr_t *hi, struct link_chk *chk)
{
    int k = cnt <= IO_MAXP / 2 ? 0 : -1;
    chk->n = 0;
    for (int i = 0; i < cnt && k >= 0; i++) {
        int r = track_resolve((uintptr_t)in[i].iov_base, in[i].iov_len, iov + k, IO_MAXP - k, chk);
        k = r < 0 ? -1 : k + r;
    }
    *lo = UINTPTR_MAX;
    *hi = 0;
    if (k > 0)
        substituted_span(iov, k, in, cnt, lo, hi);
    return k;
}

/* out_target(), or -1 when the rewrite would bypass a shim */
static int usable_target(const struct zio_out *how)
{
    int sock = out_target(how);
    if (sock >= 0 && !path_ok(sock ? how->sock_path : how->file_path))
        return -1;
    return sock;
}

int io_output(const struct zio_out *how, const struct iovec *in, int cnt, ssize_t *res)
{
    struct iovec iov[IO_MAXP];
    size_t total = 0;
    for (int i = 0; i < cnt; i++)
        total += in[i].iov_len;
    uintptr_t lo, hi;
    int sock = -2, k, slot;   /* sock: not asked yet (a write's descriptor needs fstat) */
    struct link_chk chk;
    if (how->kind != OUT_WRITE)
        sock = usable_target(how);
again:
    zio_in_lib++;
    for (;;) {
        pthread_mutex_lock(&zio_lock);
        k = resolve_out(in, cnt, iov, &lo, &hi, &chk);
        if (k >= 0 && lo >= hi) {   /* no intermediate: nothing to substitute */
            pthread_mutex_unlock(&zio_lock);
            zio_in_lib--;
            return 0;
        }
        if (k < 0 || sock != -2)
            break;
        /* ask what the descriptor is outside the lock, then resolve again */
        pthread_mutex_unlock(&zio_lock);
        sock = usable_target(how);
    }
    slot = k >= 0 && sock >= 0 ? pins_take(lo, hi) : -1;
    if (slot == -1) {
        materialize_iov(in, cnt);
        ctr_add(C_OUTPUTS_MATERIALIZED, 1);
    } else {
        ctr_add(C_OUTPUTS_RESOLVED, 1);
        ctr_add(C_OUTPUT_PIECES, (uint64_t)k);
    }
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    if (slot < 0)
        return 0;   /* the program's own call, unchanged */
    if (chk.n > 0) {   /* linked bytes: only where they still equal their original */
        int bad = link_verify(&chk);
        if (bad >= 0) {
            pins_release(slot);
            zio_in_lib++;
            pthread_mutex_lock(&zio_lock);
            link_cut(chk.c[bad].dst, chk.c[bad].dst + chk.c[bad].len);
            pthread_mutex_unlock(&zio_lock);
            zio_in_lib--;
            ctr_add(C_LINK_MISMATCH, 1);
            goto again;   /* each round drops a link: it ends */
        }
        for (int i = 0; i < chk.n; i++)
            ctr_add(C_LINK_OUT_BYTES, chk.c[i].len);
    }
    ssize_t r = call(how, sock, iov, k, sock ? MSG_DONTWAIT : 0);
    pins_release(slot);
    *res = r;
    if (!sock || (r >= 0 && (size_t)r == total) || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        return 1;
    /* the socket was full: send the rest with the blocking call, as the
     * program asked, from its own (now materialised) buffers */
    size_t done = r > 0 ? (size_t)r : 0;
    int rk = advance(in, cnt, done, iov);
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    materialize_iov(iov, rk);
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    struct zio_out rest_how = *how;
    struct msghdr m2;
    if (done > 0 && how->msg) {   /* ancillary data went out with the first part */
        m2 = *how->msg;
        m2.msg_control = NULL;
        m2.msg_controllen = 0;
        rest_how.msg = &m2;
    }
    ssize_t rest = call(&rest_how, sock, iov, rk, 0);
    if (rest < 0)
        *res = done > 0 ? (ssize_t)done : rest;
    else
        *res = (ssize_t)(done + (size_t)rest);
    return 1;
}
