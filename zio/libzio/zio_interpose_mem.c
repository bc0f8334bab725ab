/*
 * Interposed copy and memory functions: memcpy, memmove (and the fortified
 * __memcpy_chk/__memmove_chk), free, realloc, and the calls that make memory
 * go away under tracked entries: munmap, mremap, madvise; and the calls
 * that change what kind of memory an address holds (mmap, mmap64, shmat,
 * shmdt, with munmap and mremap: zio_vma.c).
 *
 * The fast path for small copies touches no lock and no shared state: only a
 * copy whose length could contain a core of at least the threshold goes to
 * zio_copy().  zio_in_lib makes every copy issued by libzio itself, by the
 * handler thread, or during start-up a plain copy.
 */
#undef _FILE_OFFSET_BITS   /* mmap and mmap64: two symbols here */
#include "zio_internal.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>


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
    uintptr_t a = (uintptr_t)p;
    if (!p || zio_mode == ZIO_OFF || zio_in_lib ||
        (a >= __atomic_load_n(&zio_hull_hi, __ATOMIC_RELAXED) && !link_overlaps(a, UINTPTR_MAX)))
        return 0;
    size_t usable = zio_real.malloc_usable_size(p);
    return tab_overlaps(a, a + usable) || link_overlaps(a, a + usable) ? usable : 0;
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
    /* grown where it is (jemalloc's xallocx never moves): what libzio tracks
     * in the allocation stays valid, and nothing is copied.  Redis's AOF
     * buffer, linked to the receive ring, grows this way (ORP). */
    if (n > usable && zio_real.xallocx != NULL && zio_real.xallocx(p, n, 0, 0) >= n) {
        ctr_add(C_REALLOCS_IN_PLACE, 1);
        return p;
    }
    ctr_add(C_REALLOCS_MOVED, 1);
    /* move through the interposed copy so the realloc copy is elided too */
    void *q = zio_real.malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, usable < n ? usable : n);
    free(p);
    return q;
}

/* Memory the program unmaps, moves or discards: originals there are pushed
 * to their dependents while they still exist, and intermediates are filled
 * (a shared mapping keeps its contents past munmap or MADV_DONTNEED, so they
 * must really be there); track_materialize() then unregisters the range. */
static void forget(void *addr, size_t len)
{
    if (zio_mode != ZIO_OFF && !zio_in_lib)
        io_before_input(addr, len, 0);   /* the same preparation as for input */
}

/* The mapping kind cache (zio_vma.c) follows what the program maps. */
static int vma_tracking(void)
{
    return zio_mode == ZIO_ELIDE;
}

static void mapped(void *p, size_t len, int flags)
{
    if (p == MAP_FAILED || !vma_tracking())
        return;
    uintptr_t a = (uintptr_t)p;
    int anon = (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE && !(flags & MAP_HUGETLB);
    if (len >= zio_cfg.threshold)
        vma_note_mapped(a, pg_ceil(a + len), anon);
    else
        vma_forget(a, a + len);
}

static void *map_call(void *(**real)(void *, size_t, int, int, int, off_t), const char *name,
                      void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!*real)
        *real = zio_next(name);
    if (flags & MAP_FIXED)
        forget(addr, len);   /* what was mapped there goes, as with munmap */
    void *p = *real ? (*real)(addr, len, prot, flags, fd, off)
                    : (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    mapped(p, len, flags);
    return p;
}

ZIO_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static void *(*real)(void *, size_t, int, int, int, off_t);
    return map_call(&real, "mmap", addr, len, prot, flags, fd, off);
}

ZIO_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static void *(*real)(void *, size_t, int, int, int, off_t);
    return map_call(&real, "mmap64", addr, len, prot, flags, fd, off);
}

ZIO_EXPORT void *shmat(int id, const void *addr, int flags)
{
    static void *(*real)(int, const void *, int);
    if (!real)
        real = zio_next("shmat");
    void *p = real(id, addr, flags);
    if (vma_tracking())
        vma_forget_all();   /* its size is not at hand; shmat is rare */
    return p;
}

ZIO_EXPORT int shmdt(const void *addr)
{
    static int (*real)(const void *);
    if (!real)
        real = zio_next("shmdt");
    int r = real(addr);
    if (vma_tracking())
        vma_forget_all();
    return r;
}

ZIO_EXPORT int munmap(void *addr, size_t len)
{
    static int (*real)(void *, size_t);
    if (!real)
        real = zio_next("munmap");
    forget(addr, len);
    int r = real(addr, len);
    if (vma_tracking())
        vma_forget((uintptr_t)addr, (uintptr_t)addr + len);
    return r;
}

ZIO_EXPORT int madvise(void *addr, size_t len, int advice)
{
    static int (*real)(void *, size_t, int);
    if (!real)
        real = zio_next("madvise");
    if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE)
        forget(addr, len);
    return real(addr, len, advice);
}

ZIO_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    static void *(*real)(void *, size_t, size_t, int, ...);
    if (!real)
        real = zio_next("mremap");
    va_list ap;
    va_start(ap, flags);
    void *new_addr = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    forget(old, old_len);
    if (flags & MREMAP_FIXED)
        forget(new_addr, new_len);
    void *p = real(old, old_len, new_len, flags, new_addr);
    if (vma_tracking()) {
        vma_forget((uintptr_t)old, (uintptr_t)old + old_len);
        if (p != MAP_FAILED)
            vma_forget((uintptr_t)p, (uintptr_t)p + new_len);
    }
    return p;
}
