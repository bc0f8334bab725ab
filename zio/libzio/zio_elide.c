/*
 * Copy elision (dissertation 4.2.1.2, Fig 4.2 steps 2-4): the pieces of a
 * copy and turning one into an intermediate.  Used by zio_copy.c (memcpy)
 * and zio_move.c (overlapping moves), below both.
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

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* After MADV_DONTNEED a private anonymous page is gone; a shared or file page
 * stays resident, and such memory cannot be an intermediate.  The mapping
 * kind is uniform within a VMA, so probing both ends of the range is enough
 * unless it straddles mappings of different kinds (then the far end shows). */
static int all_missing(uintptr_t lo, uintptr_t hi)
{
    unsigned char v = 0, w = 0;
    ctr_add(C_SYS_MINCORE, 2);
    if (mincore((void *)lo, ZIO_PAGE, &v) != 0 || mincore((void *)(hi - ZIO_PAGE), ZIO_PAGE, &w) != 0)
        return 0;
    return !((v | w) & 1);
}

/* Is any page of [lo,hi) resident?  1 yes, 0 no, -1 cannot tell.  Fresh
 * heap memory is not, and then it needs no MADV_DONTNEED at all. */
static int any_resident(uintptr_t lo, uintptr_t hi)
{
    static __thread unsigned char vec[256];
    while (lo < hi) {
        size_t np = (hi - lo) / ZIO_PAGE;
        if (np > sizeof(vec))
            np = sizeof(vec);
        ctr_add(C_SYS_MINCORE, 1);
        if (mincore((void *)lo, np * ZIO_PAGE, vec) != 0)
            return -1;
        for (size_t k = 0; k < np; k++)
            if (vec[k] & 1)
                return 1;
        lo += np * ZIO_PAGE;
    }
    return 0;
}

/* First elision from an original: write-protect it.  A range released
 * earlier usually is still registered in WP mode, so try protecting first and
 * register only when that fails. */
static int protect_original(struct zio_entry *e)
{
    if (e->kind != ZE_ORIGINAL || e->protect || (e->flags & ZIO_ORIG_NOPROTECT))
        return 0;
    if (uffd_try_protect(e->addr, ze_end(e)) != 0) {
        if (uffd_register(e->addr, ze_end(e), 1) != 0)
            return -1;
        if (uffd_protect(e->addr, ze_end(e), 1) != 0) {
            reg_unregister(e->addr, ze_end(e));
            return -1;
        }
    }
    e->protect = 1;
    return 0;
}

int copy_collect(uintptr_t d, uintptr_t s, size_t n, struct piece *pc)
{
    int np = 0;
    uint64_t now = zio_now_ns();
    if (zio_forking)
        return 0;   /* the child must not inherit an intermediate */
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

/* Turn one piece into an intermediate; 0 on success.  Allocations that a
 * GC run (table full) says may be freed go to frees[*nf] for the caller to
 * free after unlocking. */
/* [lo,hi) is registered: make its pages absent.  Private anonymous memory
 * (zio_vma.c knows) only needs MADV_DONTNEED.  Other memory (shared) keeps
 * its pages past MADV_DONTNEED and may only become an intermediate where
 * nothing is resident: ask mincore before and after.  0 ok, -1 not. */
static int make_absent(uintptr_t lo, uintptr_t hi)
{
    if (vma_private_anon(lo, hi)) {
        ctr_add(C_SYS_MADVISE, 1);
        return syscall(SYS_madvise, (void *)lo, hi - lo, MADV_DONTNEED) == 0 ? 0 : -1;
    }
    int resident = any_resident(lo, hi);
    if (resident > 0) {
        ctr_add(C_SYS_MADVISE, 1);
        syscall(SYS_madvise, (void *)lo, hi - lo, MADV_DONTNEED);
    }
    return resident < 0 || (resident > 0 && !all_missing(lo, hi)) ? -1 : 0;
}

int copy_elide_piece(struct piece *p, void **frees, size_t *nf)
{
    size_t len = p->hi - p->lo;
    link_cut(p->lo, p->hi);   /* links never cover an intermediate's pages */
    /* pages that were intermediates already are registered and absent */
    size_t known = track_drop_overwritten(p->lo, p->hi);
    if (zio_mode == ZIO_ELIDE && known < len / ZIO_PAGE) {
        if (uffd_register(p->lo, p->hi, 0) != 0) {
            p->hi = 0;
            return -1;
        }
        if (make_absent(p->lo, p->hi) != 0) {
            ctr_add(C_NOT_ANON, 1);
            reg_unregister(p->lo, p->hi);
            p->hi = 0;
            return -1;
        }
    }
    struct zio_entry e = {
        .addr = p->lo, .npages = len / ZIO_PAGE, .kind = ZE_INTER,
        .key = p->key, .last_use = zio_now_ns(),
    };
    tab_set_src(&e, p->src);
    if (tab_extend_inter(&e) == 0) {
        policy_elided(p->key, len);
        ctr_add(C_BYTES_ELIDED, len);
        return 0;
    }
    if (tab_insert(&e) != 0) {
        *nf += gc_run(0, frees + *nf, GC_FREE_BATCH - *nf);
        if (tab_insert(&e) != 0) {
            if (zio_mode == ZIO_ELIDE)
                reg_unregister(p->lo, p->hi);
            p->hi = 0;
            return -1;
        }
    }
    policy_elided(p->key, len);
    ctr_add(C_BYTES_ELIDED, len);
    return 0;
}
