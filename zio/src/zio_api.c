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
    uffd_start_handler();
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
    int k = track_resolve((uintptr_t)addr, len, out, max);
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    ctr_add(C_API_RESOLVE, 1);
    return k;
}

ZIO_EXPORT int zio_release(void *addr, size_t len)
{
    if (inactive())
        return 0;
    ctr_add(C_API_RELEASE, 1);
    io_before_input(addr, len);
    return 0;
}
