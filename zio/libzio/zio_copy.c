/*
 * A large copy (memcpy/memmove of at least the threshold): its pieces are
 * elided (zio_elide.c), an overlapping move with an intermediate source is
 * re-pointed (zio_move.c), and the rest is copied plainly after the lock is
 * dropped, from sources resolved to originals.
 */
#include "zio_internal.h"

#include "zio/zio_api.h"

#include <string.h>
#include <sys/mman.h>

/* A destination range copied eagerly (fringes and non-elided parts).  Its
 * source is resolved to originals while the lock is held, so the copy reads
 * mapped memory instead of faulting on source intermediate pages (a fringe
 * often shares a page with the source's core). */
struct gap {
    uintptr_t dpos;
    size_t len;
    int niov;   /* 0: copy straight from the source */
    struct iovec iov[8];
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
            g->niov = zio_mode == ZIO_ELIDE ? track_resolve(pos - d + s, g->len, g->iov, 8, NULL) : 0;
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

/* Is there an absent page under [lo,hi) that libzio knows of (an
 * intermediate's, or an idle registration's)?  A plain copy would fault it
 * in (about 1.4 us a page), more than eliding the copy costs. */
static int dst_absent(uintptr_t lo, uintptr_t hi)
{
    size_t i = tab_lower(pg_floor(lo));
    return (i < zio_tab_n && zio_tab[i].addr < pg_ceil(hi)) || reg_any(pg_floor(lo), pg_ceil(hi));
}

/* Are all pages under [lo,hi) resident?  Asked (mincore) only from
 * LINK_PROBE_MIN on: below it a probe would cost half of what the link
 * saves, and the fresh-page faults of a plain copy are few. */
#define LINK_PROBE_MIN (128 * 1024)
static int dst_resident(uintptr_t lo, uintptr_t hi)
{
    static __thread unsigned char vec[256];
    if (hi - lo < LINK_PROBE_MIN)
        return 1;
    for (lo = pg_floor(lo), hi = pg_ceil(hi); lo < hi;) {
        size_t np = (hi - lo) / ZIO_PAGE < sizeof(vec) ? (hi - lo) / ZIO_PAGE : sizeof(vec);
        ctr_add(C_SYS_MINCORE, 1);
        if (mincore((void *)lo, np * ZIO_PAGE, vec) != 0)
            return 0;
        for (size_t k = 0; k < np; k++)
            if (!(vec[k] & 1))
                return 0;
        lo += np * ZIO_PAGE;
    }
    return 1;
}

/* One round of a copy: [s, s+n) to [d, d+n) with at most MAX_PIECES pieces
 * elided; with prior > 0, whole pages of the run [d - prior, d + n) may be
 * elided, not only those of this copy.  Returns how many bytes from d the
 * round copied (less than n when the pieces ran out before the end: the
 * rest must be a new round, or its tracked source would be read plainly,
 * faulting in every intermediate page under it).  *elided counts the
 * pieces turned into intermediates, *fringe the bytes copied beside them. */
/* Where a copy from stack originals is linked rather than elided
 * (zio_link.c), below ZIO_LINK_MAX:
 *  - a program's copy below LINK_CONVERT_MAX, whatever its destination:
 *    absent pages fault in once, and the allocator hands them back resident
 *    for the next copies, which then cost no system call.  Eliding into
 *    absent memory keeps it absent (the freed intermediate's pages stay
 *    idle), so every later copy there pays the elision again: Redis's AOF
 *    buffers at 256 KiB values stayed elided that way;
 *  - a stack's stream piece (and a larger copy) only into memory that is
 *    resident and holds no intermediate or idle page: the value may go on
 *    to a MiB, whose plain copy into fresh pages costs 300 us against the
 *    elision's 20. */
#define LINK_CONVERT_MAX (512 * 1024)
static size_t copy_round(uintptr_t d, uintptr_t s, size_t n, size_t prior, int stream,
                         int *elided, size_t *fringe, size_t *linked)
{
    struct piece pc[MAX_PIECES];
    void *frees[GC_FREE_BATCH];
    size_t nf = 0;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    uintptr_t rd = prior ? run_start(d, prior) : d;
    /* below ZIO_LINK_MAX a copy from stack originals into resident memory
     * is plain and linked (zio_link.c): cheaper than the page-table work of
     * eliding it */
    int convert = !stream && n < LINK_CONVERT_MAX;
    int link = zio_mode == ZIO_ELIDE && n + (d - rd) < zio_cfg.link_max &&
               (convert || !dst_absent(rd, d + n)) && link_src_nvm(s - (d - rd), n + (d - rd)) &&
               (convert || dst_resident(rd, d + n));
    int np = link ? 0 : copy_collect(rd, s - (d - rd), n + (d - rd), pc), ok = 0;
    if (np == MAX_PIECES && pc[np - 1].hi > d && pc[np - 1].hi < d + n)
        n = pc[np - 1].hi - d;   /* the next round starts after the last piece */
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
        reg_unregister(pg_ceil(d), pg_floor(d + n));
    struct gap gaps[MAX_PIECES + 1];
    int ng = plan_gaps(d, s, n, pc, np, gaps);
    /* idle registrations under what is copied plainly (usually a fringe
     * page): those pages must not fault into the handler thread */
    for (int g = 0; g < ng; g++)
        reg_prepare_write(pg_floor(gaps[g].dpos), pg_ceil(gaps[g].dpos + gaps[g].len));
    /* what is copied plainly from stack originals is linked to them: the
     * whole run in link mode, else the fringes beside the elided pieces */
    if (zio_mode == ZIO_ELIDE && link)
        *linked += link_record(rd, s - (d - rd), n + (d - rd));
    for (int g = 0; g < ng && zio_mode == ZIO_ELIDE && !link; g++)
        *linked += link_record(gaps[g].dpos, gaps[g].dpos - d + s, gaps[g].len);
    if (zio_tab_n > zio_cfg.gc_max)
        nf += gc_run(0, frees + nf, GC_FREE_BATCH - nf);
    pthread_mutex_unlock(&zio_lock);
    gc_free_later(frees, nf);   /* never call the allocator under the lock */
    zio_in_lib--;
    for (int g = 0; g < ng; g++) {
        copy_gap(&gaps[g], d, s);
        *fringe += gaps[g].len;
    }
    *elided += ok;
    return n;
}

static void *copy_run(uintptr_t d, uintptr_t s, size_t n, size_t prior, int stream)
{
    int elided = 0;
    size_t fringe = 0, linked = 0;
    for (size_t done = 0; done < n;) {
        done += copy_round(d + done, s + done, n - done, done ? 0 : prior, stream, &elided, &fringe,
                           &linked);
    }
    if (elided) {
        ctr_add(C_COPIES_ELIDED, 1);
        ctr_add(C_FRINGE_BYTES, fringe);
    } else if (linked) {
        ctr_add(C_COPIES_LINKED, 1);
    } else if (n >= zio_cfg.threshold) {   /* a small stream piece is no large copy */
        count_plain(n);
    }
    return (void *)d;
}

void *zio_copy(void *dst, const void *src, size_t n)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    ctr_add(C_COPIES_SEEN, 1);
    if (d < s + n && s < d + n) {   /* overlapping (memmove) */
        size_t moved = 0;
        if (link_overlaps(s, s + n) || link_overlaps(d, d + n)) {   /* links move along */
            zio_in_lib++;
            pthread_mutex_lock(&zio_lock);
            moved = link_move(d, s, n);
            pthread_mutex_unlock(&zio_lock);
            zio_in_lib--;
        }
        if (zio_move_repoint(d, s, n))
            return dst;
        if (moved)
            ctr_add(C_COPIES_LINKED, 1);
        else
            count_plain(n);
        return zio_plain_move(dst, src, n);
    }
    if (!tab_overlaps(s, s + n) && !tab_overlaps(d, d + n) && !reg_overlaps(d, d + n) &&
        !link_overlaps(s, s + n) && !link_overlaps(d, d + n)) {
        count_plain(n);
        return zio_plain_copy(dst, src, n);
    }
    return copy_run(d, s, n, 0, 0);
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
    if (prior + n < zio_cfg.threshold || !tab_overlaps(s - prior, s + n)) {
        if (reg_overlaps(d, d + n) || link_overlaps(d, d + n)) {   /* idle pages, old links */
            zio_in_lib++;
            pthread_mutex_lock(&zio_lock);
            link_cut(d, d + n);
            reg_prepare_write(pg_floor(d), pg_ceil(d + n));
            pthread_mutex_unlock(&zio_lock);
            zio_in_lib--;
        }
        return zio_plain_copy(dst, src, n);
    }
    ctr_add(C_COPIES_SEEN, 1);
    return copy_run(d, s, n, prior, 1);
}
