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

#include <sys/types.h>

/* previous input on this thread: lets a read that continues exactly where
 * the last one stopped also claim the partial page between them */
static __thread uintptr_t last_lo, last_end;

void io_before_input(void *buf, size_t len)
{
    uintptr_t b = (uintptr_t)buf;
    if (len == 0 || !tab_overlaps(b, b + len))
        return;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    track_materialize(b, b + len);
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
    uffd_start_handler();
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

void io_before_inputv(const struct iovec *iov, int cnt)
{
    for (int i = 0; i < cnt; i++)
        io_before_input(iov[i].iov_base, iov[i].iov_len);
}

void io_after_inputv(const struct iovec *iov, int cnt, ssize_t got, uintptr_t key)
{
    for (int i = 0; i < cnt && got > 0; i++) {
        size_t n = (size_t)got < iov[i].iov_len ? (size_t)got : iov[i].iov_len;
        io_after_input(iov[i].iov_base, (ssize_t)n, key);
        got -= (ssize_t)n;
    }
}

/* Gather list for output of `in`, or -1 when the buffers hold no
 * intermediates (or too many pieces: then they are materialised instead). */
int io_resolve_output(const struct iovec *in, int cnt, struct iovec *out, int max)
{
    if (zio_mode != ZIO_ELIDE || zio_in_lib)
        return -1;
    int any = 0;
    for (int i = 0; i < cnt && !any; i++)
        any = tab_overlaps((uintptr_t)in[i].iov_base, (uintptr_t)in[i].iov_base + in[i].iov_len);
    if (!any)
        return -1;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int k = 0;
    for (int i = 0; i < cnt && k >= 0; i++) {
        int r = track_resolve((uintptr_t)in[i].iov_base, in[i].iov_len, out + k, max - k);
        k = r < 0 ? -1 : k + r;
    }
    if (k < 0) {
        for (int i = 0; i < cnt; i++)
            track_materialize((uintptr_t)in[i].iov_base,
                              (uintptr_t)in[i].iov_base + in[i].iov_len);
    } else if (k != cnt) {
        ctr_add(C_OUTPUTS_RESOLVED, 1);
        ctr_add(C_OUTPUT_PIECES, (uint64_t)k);
    }
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    return k;
}
