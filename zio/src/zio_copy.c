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

#include <string.h>
#include <sys/mman.h>

/* After MADV_DONTNEED a private anonymous page is gone; a shared or file page
 * stays resident, and such memory cannot be an intermediate.  The mapping
 * kind is uniform within a VMA, so probing both ends of the range is enough
 * unless it straddles mappings of different kinds (then the far end shows). */
static int all_missing(uintptr_t lo, uintptr_t hi)
{
    unsigned char v = 0, w = 0;
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
            uffd_unregister(e->addr, ze_end(e));
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
int copy_elide_piece(struct piece *p, void **frees, size_t *nf)
{
    size_t len = p->hi - p->lo;
    track_drop_overwritten(p->lo, p->hi);
    if (zio_mode == ZIO_ELIDE) {
        if (uffd_register(p->lo, p->hi, 0) != 0) {
            p->hi = 0;
            return -1;
        }
        int resident = any_resident(p->lo, p->hi);
        if (resident > 0)
            madvise((void *)p->lo, len, MADV_DONTNEED);
        if (resident < 0 || (resident > 0 && !all_missing(p->lo, p->hi))) {
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
    if (tab_extend_inter(&e) == 0) {
        policy_elided(p->key, len);
        ctr_add(C_BYTES_ELIDED, len);
        return 0;
    }
    if (tab_insert(&e) != 0) {
        *nf += gc_run(0, frees + *nf, GC_FREE_BATCH - *nf);
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

/* [d - prior, d) may already hold, copied plainly by earlier calls of the
 * same stream (zio_copy_continued), the bytes just before s.  Extend the run
 * back over them, but not over memory that is tracked already. */
static uintptr_t run_start(uintptr_t d, size_t prior)
{
    uintptr_t lo = prior > d ? 0 : d - prior;
    for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < d; i++)
        lo = ze_end(&zio_tab[i]) < d ? ze_end(&zio_tab[i]) : d;
    return lo;
}

/* A piece that starts before d takes over bytes an earlier call copied: only
 * while they still equal their source (the program may have changed them).
 * Otherwise it starts at d's next page, or is dropped (hi = lo). */
static void check_adopted(struct piece *p, uintptr_t d)
{
    if (p->lo >= d)
        return;
    uintptr_t end = p->hi < d ? p->hi : d;
    if (memcmp((const void *)p->lo, (const void *)p->src, end - p->lo) == 0) {
        ctr_add(C_BYTES_ADOPTED, end - p->lo);
        return;
    }
    uintptr_t lo = pg_ceil(d);
    if (p->hi <= lo || p->hi - lo < zio_cfg.threshold) {
        p->hi = p->lo;
        return;
    }
    p->src += lo - p->lo;
    p->lo = lo;
}

/* Copy [s, s+n) to [d, d+n); with prior > 0, whole pages of the run
 * [d - prior, d + n) may be elided, not only those of this copy. */
static void *copy_run(uintptr_t d, uintptr_t s, size_t n, size_t prior)
{
    struct piece pc[MAX_PIECES];
    void *frees[GC_FREE_BATCH];
    size_t nf = 0;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    uintptr_t rd = prior ? run_start(d, prior) : d;
    int np = copy_collect(rd, s - (d - rd), n + (d - rd), pc), ok = 0;
    for (int k = 0; k < np; k++) {
        check_adopted(&pc[k], d);
        if (pc[k].hi != pc[k].lo && copy_elide_piece(&pc[k], frees, &nf) == 0)
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
    else if (n >= zio_cfg.threshold)   /* a small stream piece is no large copy */
        count_plain(n);
    return (void *)d;
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
    return copy_run(d, s, n, 0);
}

__thread int zio_stack_input;

/* A stack copying a received stream out in pieces (libtas: an application
 * reading a socket a few KiB at a time) says how many bytes before dst it
 * copied from the bytes just before src.  Pages the pieces fill together
 * can then be elided although no single copy covers one: the stream's
 * bytes stay references to the stack's buffer (zio_api.h). */
ZIO_EXPORT void *zio_copy_continued(void *dst, const void *src, size_t n, size_t prior)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (zio_mode == ZIO_OFF || zio_in_lib || n == 0 || (d < s + n && s < d + n))
        return zio_plain_move(dst, src, n);
    zio_stack_input = 1;   /* the read that runs this copy records no input */
    if (prior > (1u << 30) || prior > s)
        prior = 0;
    if (prior + n < zio_cfg.threshold || !tab_overlaps(s - prior, s + n))
        return zio_plain_copy(dst, src, n);
    ctr_add(C_COPIES_SEEN, 1);
    return copy_run(d, s, n, prior);
}
