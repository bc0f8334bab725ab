/*
 * The state and helpers every zIO file uses: configuration, mode, the lock,
 * the reentrancy flag, the real libc functions, the clock, the log and plain
 * copies.  The bottom of libzio: it calls no other zIO file, so the files
 * above it (zio_init.c sets this state up at start) need not call each other
 * back.
 */
#include "zio_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Threshold 16 KiB, the paper's and the default.  On this VM
 * write-protecting and then unprotecting an original costs ~0.15 us per page
 * while a copy into warm memory costs ~0.03 us per page, so elision only
 * pays where the plain copy would fault in fresh pages, which glibc's warm
 * recycling makes rare below 128 KiB: there `--threshold 131072` is faster
 * (zio/README.md, "Threshold"). */
struct zio_config zio_cfg = {
    .threshold = 16384, .ratio = 0.06, .gc_max = 1024, .gc_age_ns = 1000000000ULL,
    .link_max = 1048576, .link_out_min = 0,
};
volatile int zio_mode = ZIO_OFF;
pthread_mutex_t zio_lock = PTHREAD_MUTEX_INITIALIZER;
__thread int zio_in_lib __attribute__((tls_model("initial-exec")));
struct zio_real zio_real;

/* The tracking table (zio_table.c maintains it; zio_srcidx.c checks its
 * index against it). */
struct zio_entry *zio_tab;
size_t zio_tab_n, zio_tab_cap;
/* Searches for the dependents of an original walk the whole table (an
 * intermediate's source is not ordered with its address).  A server keeps
 * many originals but few live intermediates (Redis: ~1000 stored values,
 * a handful of reply buffers), so knowing there are none skips the walk. */
size_t zio_inter_n;

/* Fork in progress: no new elisions (zio_init.c's fork handlers). */
int zio_forking;

uint64_t zio_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void log_line(const char *fmt, va_list ap)
{
    char buf[256];
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    static const char pfx[] = "zio: ";
    if (write(2, pfx, sizeof(pfx) - 1) > 0 && write(2, buf, (size_t)n) > 0)
        return;
}

void zio_log(const char *fmt, ...)
{
    static int logged;
    if (!zio_cfg.verbose && logged++)
        return;   /* without ZIO_VERBOSE only the first message is shown */
    va_list ap;
    va_start(ap, fmt);
    log_line(fmt, ap);
    va_end(ap);
}

/* Always shown, then abort: for the cases where going on would let the
 * program read bytes libzio failed to put back. */
void zio_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(fmt, ap);
    va_end(ap);
    abort();
}

void *zio_next(const char *name)
{
    zio_in_lib++;
    void *f = dlsym(RTLD_NEXT, name);
    zio_in_lib--;
    return f;
}

/* Used before the real memcpy is known (dlsym may itself copy). */
static void *byte_move(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp || dp >= sp + n) {
        for (size_t i = 0; i < n; i++)
            dp[i] = sp[i];
    } else {
        for (size_t i = n; i > 0; i--)
            dp[i - 1] = sp[i - 1];
    }
    return d;
}

void *zio_plain_copy(void *d, const void *s, size_t n)
{
    void *(*f)(void *, const void *, size_t) = __atomic_load_n(&zio_real.memcpy, __ATOMIC_RELAXED);
    return f ? f(d, s, n) : byte_move(d, s, n);
}

void *zio_plain_move(void *d, const void *s, size_t n)
{
    void *(*f)(void *, const void *, size_t) = __atomic_load_n(&zio_real.memmove, __ATOMIC_RELAXED);
    return f ? f(d, s, n) : byte_move(d, s, n);
}

int iov_emit(struct iovec *out, int k, int max, uintptr_t base, size_t len)
{
    if (k > 0 && (uintptr_t)out[k - 1].iov_base + out[k - 1].iov_len == base) {
        out[k - 1].iov_len += len;
        return k;
    }
    if (k == max) {
        errno = E2BIG;
        return -1;
    }
    out[k].iov_base = (void *)base;
    out[k].iov_len = len;
    return k + 1;
}
