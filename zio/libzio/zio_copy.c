/*
 * A large copy (memcpy/memmove of at least the threshold): its pieces are
 * elided (zio_elide.c), an overlapping move with an intermediate source is
 * re-pointed (zio_move.c), and the rest is copied plainly after the lock is
 * dropped, from sources resolved to originals.
 */
#include "zio_internal.h"

#include "zio/zio_api.h"

#include <sys/mman.h>

/* A destination range copied eagerly (fringes and non-elided parts).  Its
 * source is resolved to originals while the lock is held, so the copy reads
 * mapped memory instead of faulting on source intermediate pages (a fringe
 * often shares a page with the source's core). */
struct gap {
    uintptr_t dpos;
    size_t len;
    int niov;   /* 0: copy straight from the source */
    struct iovec iov[4];
};

static int plan_gaps(uintptr_t d, uintptr_t s, size_t n, const struct piece *pc, int np,
                     struct gap *gaps)
{
    int ng = 0;
    uintptr_t pos = d;
    for (int k = 0; k <= np; k++) {   /* pieces are sorted, like the table */
        uintptr_t stop = k < np ? pc[k].lo : d + n;
        if (stop > pos) {
            struct gap *g = &gaps[ng++];
            g->dpos = pos;
            g->len = stop - pos;
            /* profile mode: "intermediates" are real copies and their
             * originals unprotected, so never read through them */
            g->niov = zio_mode == ZIO_ELIDE ? track_resolve(pos - d + s, g->len, g->iov, 4) : 0;
            for (int i = 0; i < g->niov; i++) {
                uintptr_t b = (uintptr_t)g->iov[i].iov_base;
                if (b < d + n && d < b + g->iov[i].iov_len)
                    g->niov = -1;   /* an original this copy overwrites: let
                                       the write fault push it first */
            }
            if (g->niov < 0)
                g->niov = 0;
        }
        if (k < np && pc[k].hi > pos)
            pos = pc[k].hi;
    }
    return ng;
}

static void copy_gap(const struct gap *g, uintptr_t d, uintptr_t s)
{
    if (g->niov == 0) {
        zio_plain_copy((void *)g->dpos, (const void *)(g->dpos - d + s), g->len);
        return;
    }
    uintptr_t at = g->dpos;
    for (int i = 0; i < g->niov; i++) {
        zio_plain_copy((void *)at, g->iov[i].iov_base, g->iov[i].iov_len);
        at += g->iov[i].iov_len;
    }
}

/* every copy that reaches zio_copy() is large (>= threshold) */
static void count_plain(size_t n)
{
    ctr_add(C_COPIES_PLAIN, 1);
    ctr_add(C_BYTES_PLAIN_LARGE, n);
}

void *zio_copy(void *dst, const void *src, size_t n)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    ctr_add(C_COPIES_SEEN, 1);
    if (d < s + n && s < d + n) {   /* overlapping (memmove) */
        if (zio_move_repoint(d, s, n))
            return dst;
        count_plain(n);
        return zio_plain_move(dst, src, n);
    }
    if (!tab_overlaps(s, s + n) && !tab_overlaps(d, d + n) && !reg_overlaps(d, d + n)) {
        count_plain(n);
        return zio_plain_copy(dst, src, n);
    }
    struct piece pc[MAX_PIECES];
    void *frees[GC_FREE_BATCH];
    size_t nf = 0;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int np = copy_collect(d, s, n, pc), ok = 0;
    for (int k = 0; k < np; k++) {
        if (copy_elide_piece(&pc[k], frees, &nf) == 0)
            ok++;
        if (zio_mode != ZIO_ELIDE || pc[k].hi == 0)
            pc[k].hi = pc[k].lo;   /* not elided (or profiling): copy below */
    }
    /* pages this plain copy overwrites need no fill: forget them, and let
     * the kernel (not the handler thread) zero-fill them before the copy */
    if (ok == 0 && track_drop_overwritten(d, d + n) > 0)
        uffd_unregister(pg_ceil(d), pg_floor(d + n));
    struct gap gaps[MAX_PIECES + 1];
    int ng = plan_gaps(d, s, n, pc, np, gaps);
    /* idle registrations under what is copied plainly (usually a fringe
     * page): let the kernel, not the handler thread, fault those pages in */
    for (int g = 0; g < ng; g++)
        reg_drop(pg_floor(gaps[g].dpos), pg_ceil(gaps[g].dpos + gaps[g].len));
    if (zio_tab_n > zio_cfg.gc_max)
        nf += gc_run(0, frees + nf, GC_FREE_BATCH - nf);
    pthread_mutex_unlock(&zio_lock);
    gc_free_later(frees, nf);   /* never call the allocator under the lock */
    zio_in_lib--;
    for (int g = 0; g < ng; g++) {
        copy_gap(&gaps[g], d, s);
        if (ok)
            ctr_add(C_FRINGE_BYTES, gaps[g].len);
    }
    if (ok)
        ctr_add(C_COPIES_ELIDED, 1);
    else
        count_plain(n);
    return dst;
}
