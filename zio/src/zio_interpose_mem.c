/*
 * Interposed copy and memory functions: memcpy, memmove (and the fortified
 * __memcpy_chk/__memmove_chk), free, realloc.
 *
 * The fast path for small copies touches no lock and no shared state: only a
 * copy whose length could contain a core of at least the threshold goes to
 * zio_copy().  zio_in_lib makes every copy issued by libzio itself, by the
 * handler thread, or during start-up a plain copy.
 */
#include "zio_internal.h"


extern void __chk_fail(void) __attribute__((noreturn));

static inline int want_zio(size_t n)
{
    if (zio_mode == ZIO_PROFILE && !zio_in_lib)
        profile_count(n);
    return n >= zio_cfg.threshold && zio_mode != ZIO_OFF && !zio_in_lib;
}

ZIO_EXPORT void *memcpy(void *d, const void *s, size_t n)
{
    return want_zio(n) ? zio_copy(d, s, n) : zio_plain_copy(d, s, n);
}

ZIO_EXPORT void *memmove(void *d, const void *s, size_t n)
{
    return want_zio(n) ? zio_copy(d, s, n) : zio_plain_move(d, s, n);
}

ZIO_EXPORT void *__memcpy_chk(void *d, const void *s, size_t n, size_t dlen)
{
    if (n > dlen)
        __chk_fail();
    return memcpy(d, s, n);
}

ZIO_EXPORT void *__memmove_chk(void *d, const void *s, size_t n, size_t dlen)
{
    if (n > dlen)
        __chk_fail();
    return memmove(d, s, n);
}

/* Could [p, end of its allocation) hold tracked entries?  Returns the usable
 * size when it could, 0 otherwise. */
static size_t tracked_alloc(void *p)
{
    if (!p || zio_mode == ZIO_OFF || zio_in_lib ||
        (uintptr_t)p >= __atomic_load_n(&zio_hull_hi, __ATOMIC_RELAXED))
        return 0;
    size_t usable = zio_real.malloc_usable_size(p);
    return tab_overlaps((uintptr_t)p, (uintptr_t)p + usable) ? usable : 0;
}

ZIO_EXPORT void free(void *p)
{
    if (!p)
        return;
    if (!zio_real.free) {
        zio_ensure_init();
        if (!zio_real.free)
            return;   /* a free during symbol lookup itself: leak it */
    }
    if (tracked_alloc(p))
        zio_free_tracked(p);
    else
        zio_real.free(p);
}

ZIO_EXPORT void *realloc(void *p, size_t n)
{
    if (!zio_real.realloc)
        zio_ensure_init();
    size_t usable = n ? tracked_alloc(p) : 0;
    if (!usable)
        return zio_real.realloc(p, n);
    /* move through the interposed copy so the realloc copy is elided too */
    void *q = zio_real.malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, usable < n ? usable : n);
    free(p);
    return q;
}
