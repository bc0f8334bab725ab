/* The explicit API for IO stacks (include/zio/zio_api.h, contract 2). */
#include "zio_internal.h"

#include "zio/zio_api.h"

#include <errno.h>

static int inactive(void)
{
    zio_ensure_init();
    return zio_mode != ZIO_ELIDE;
}

ZIO_EXPORT int zio_register_original(void *addr, size_t len, unsigned flags)
{
    if (inactive())
        return 0;
    uintptr_t a = (uintptr_t)addr;
    int rc;
    fault_handler_start();
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    track_materialize(a, a + len);   /* whatever the range held before is gone */
    rc = track_add_original(pg_ceil(a), pg_floor(a + len), flags,
                            (uintptr_t)__builtin_return_address(0));
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    ctr_add(C_API_REGISTER, 1);
    if (rc != 0)
        errno = ENOSPC;
    return rc;
}

ZIO_EXPORT int zio_resolve(const void *addr, size_t len, struct iovec *out, int max)
{
    if (max < 1) {
        errno = E2BIG;
        return -1;
    }
    if (inactive() || !tab_overlaps((uintptr_t)addr, (uintptr_t)addr + len)) {
        out[0].iov_base = (void *)addr;
        out[0].iov_len = len;
        return 1;
    }
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int k = track_resolve((uintptr_t)addr, len, out, max, NULL);
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    ctr_add(C_API_RESOLVE, 1);
    return k;
}

/* NULL with a length, or a range that wraps around the address space */
static int bad_range(const void *addr, size_t len)
{
    return (addr == NULL && len > 0) || (uintptr_t)addr + len < (uintptr_t)addr;
}

/* Release whole pages [lo,hi) under zio_lock, the way input into them would
 * (io_before_input): fill intermediates depending on them, materialise
 * intermediates there, drop idle registrations.  busy_check: first answer 1
 * (and change nothing) when some intermediate depends on the range. */
static int release_locked(uintptr_t lo, uintptr_t hi, int busy_check)
{
    if (!tab_overlaps(lo, hi) && !reg_overlaps(lo, hi))
        return 0;   /* a dependent's source always lies in a tracked original */
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int busy = busy_check && track_has_dependents(lo, hi);
    size_t filled = 0;
    if (!busy) {
        filled = track_materialize(lo, hi);
        reg_drop(lo, hi);
    }
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    ctr_add(C_RELEASE_FILL_BYTES, filled);
    return busy;
}

ZIO_EXPORT int zio_release(void *addr, size_t len)
{
    if (inactive() || len == 0)
        return 0;
    ctr_add(C_API_RELEASE, 1);
    uintptr_t a = (uintptr_t)addr;
    release_locked(pg_floor(a), pg_ceil(a + len), 0);
    return 0;
}

/* The range is checked in whole pages, as zio_release() releases whole
 * pages: a dependent of another byte of a first or last page that the range
 * shares makes it busy, since releasing it would fill that dependent. */
ZIO_EXPORT int zio_release_if_unshared(void *addr, size_t len)
{
    if (bad_range(addr, len)) {
        errno = EINVAL;
        return -1;
    }
    if (inactive() || len == 0)
        return 0;
    ctr_add(C_API_TRY_RELEASE, 1);
    uintptr_t a = (uintptr_t)addr;
    int busy = release_locked(pg_floor(a), pg_ceil(a + len), 1);
    if (busy)
        ctr_add(C_API_RELEASE_BUSY, 1);
    return busy;
}
