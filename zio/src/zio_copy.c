/*
 * Copy elision (dissertation 4.2.1.2, Fig 4.2 steps 2-4).
 *
 * For a copy dst <- src of n bytes, every tracked entry under the source gives
 * a candidate piece: the whole destination pages whose source bytes all lie
 * inside that entry.  That is the fringe union rule: a destination page that
 * would take even one byte from outside the tracked source (its fringe, or
 * untracked memory) is copied eagerly.  A piece of at least the threshold
 * becomes an intermediate entry pointing at the entry's original (chains
 * resolve to the first original); its pages are unmapped and registered for
 * MISSING faults.  Everything outside the pieces is copied plainly after the
 * lock is dropped.
 */
#include "zio_internal.h"

#include "zio/zio_api.h"

#include <sys/mman.h>

#define MAX_PIECES 8

struct piece {
    uintptr_t lo, hi, src, key;
};

/* After MADV_DONTNEED a private anonymous page is gone; a shared or file page
 * stays resident, and such memory cannot be an intermediate. */
static int all_missing(uintptr_t lo, uintptr_t hi)
{
    static __thread unsigned char vec[1024];
    for (; lo < hi; lo += sizeof(vec) * ZIO_PAGE) {
        size_t np = (hi - lo) / ZIO_PAGE;
        if (np > sizeof(vec))
            np = sizeof(vec);
        if (mincore((void *)lo, np * ZIO_PAGE, vec) != 0)
            return 0;
        for (size_t k = 0; k < np; k++)
            if (vec[k] & 1)
                return 0;
    }
    return 1;
}

static int protect_original(struct zio_entry *e)
{
    if (e->kind != ZE_ORIGINAL || e->protect || (e->flags & ZIO_ORIG_NOPROTECT))
        return 0;
    if (uffd_register(e->addr, ze_end(e), 1) != 0)
        return -1;
    if (uffd_protect(e->addr, ze_end(e), 1) != 0) {
        uffd_unregister(e->addr, ze_end(e));
        return -1;
    }
    e->protect = 1;
    return 0;
}

static int collect(uintptr_t d, uintptr_t s, size_t n, struct piece *pc)
{
    int np = 0;
    uint64_t now = zio_now_ns();
    for (size_t i = tab_lower(s); i < zio_tab_n && zio_tab[i].addr < s + n && np < MAX_PIECES; i++) {
        struct zio_entry *e = &zio_tab[i];
        uintptr_t a = e->addr > s ? e->addr : s;
        uintptr_t b = ze_end(e) < s + n ? ze_end(e) : s + n;
        uintptr_t lo = pg_ceil(a - s + d), hi = pg_floor(b - s + d);
        if (hi <= lo || hi - lo < zio_cfg.threshold)
            continue;
        if (!policy_allows(e->key)) {
            ctr_add(C_POLICY_FALLBACKS, 1);
            continue;
        }
        uintptr_t osrc = ze_src(e) + (lo - d + s - e->addr);
        if (osrc < d + n && d < osrc + (hi - lo))
            continue;   /* the copy overwrites the very original it would point at */
        if (protect_original(e) != 0)
            continue;
        e->last_use = now;
        pc[np++] = (struct piece){ lo, hi, osrc, e->key };
    }
    return np;
}

/* Turn one piece into an intermediate; 0 on success. */
static int elide_piece(struct piece *p)
{
    size_t len = p->hi - p->lo;
    track_drop_overwritten(p->lo, p->hi);
    if (zio_mode == ZIO_ELIDE) {
        if (uffd_register(p->lo, p->hi, 0) != 0) {
            p->hi = 0;
            return -1;
        }
        madvise((void *)p->lo, len, MADV_DONTNEED);
        if (!all_missing(p->lo, p->hi)) {
            ctr_add(C_NOT_ANON, 1);
            uffd_unregister(p->lo, p->hi);
            p->hi = 0;
            return -1;
        }
    }
    struct zio_entry e = {
        .addr = p->lo, .npages = len / ZIO_PAGE, .kind = ZE_INTER,
        .key = p->key, .last_use = zio_now_ns(),
    };
    tab_set_src(&e, p->src);
    if (tab_insert(&e) != 0) {
        void *frees[GC_FREE_BATCH];
        size_t nf = gc_run(0, frees, GC_FREE_BATCH);
        gc_free_later(frees, nf);
        if (tab_insert(&e) != 0) {
            if (zio_mode == ZIO_ELIDE)
                uffd_unregister(p->lo, p->hi);
            p->hi = 0;
            return -1;
        }
    }
    policy_elided(p->key, len);
    ctr_add(C_BYTES_ELIDED, len);
    return 0;
}

void *zio_copy(void *dst, const void *src, size_t n)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    ctr_add(C_COPIES_SEEN, 1);
    if (d < s + n && s < d + n)   /* overlapping: a plain move is the only option */
        return zio_plain_move(dst, src, n);
    if (!tab_overlaps(s, s + n) && !tab_overlaps(d, d + n)) {
        ctr_add(C_COPIES_PLAIN, 1);
        return zio_plain_copy(dst, src, n);
    }
    struct piece pc[MAX_PIECES];
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int np = collect(d, s, n, pc), ok = 0;
    for (int k = 0; k < np; k++) {
        if (elide_piece(&pc[k]) == 0)
            ok++;
        if (zio_mode != ZIO_ELIDE || pc[k].hi == 0)
            pc[k].hi = pc[k].lo;   /* not elided (or profiling): copy below */
    }
    if (ok == 0)
        track_drop_overwritten(d, d + n);   /* no fills for pages we overwrite */
    if (zio_tab_n > zio_cfg.gc_max) {
        void *frees[GC_FREE_BATCH];
        size_t nf = gc_run(0, frees, GC_FREE_BATCH);
        pthread_mutex_unlock(&zio_lock);
        gc_free_later(frees, nf);
    } else {
        pthread_mutex_unlock(&zio_lock);
    }
    zio_in_lib--;
    /* eager part: everything outside the pieces (pieces are sorted by
     * address because the table is) */
    uintptr_t pos = d;
    for (int k = 0; k <= np; k++) {
        uintptr_t stop = k < np ? pc[k].lo : d + n;
        if (stop > pos) {
            zio_plain_copy((void *)pos, (const void *)(pos - d + s), stop - pos);
            if (ok)
                ctr_add(C_FRINGE_BYTES, stop - pos);
        }
        if (k < np && pc[k].hi > pos)
            pos = pc[k].hi;
    }
    ctr_add(ok ? C_COPIES_ELIDED : C_COPIES_PLAIN, 1);
    return dst;
}
