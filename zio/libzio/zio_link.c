/*
 * Links: "these bytes were copied plainly from this stack original"
 * (ORP).  A copy whose source is (directly, through an intermediate or
 * through another link) an NVM original of a stack (libtas's receive ring,
 * ZIO_ORIG_NVM) records, for every part it copies plainly, a link from the
 * destination bytes to the original bytes.  An output of linked bytes then
 * sends (writes) the original bytes in their place, after comparing them:
 * so libstrata logs a reference to the ring instead of the bytes, as for
 * an intermediate.
 *
 * Why: eliding a copy of 64 KiB costs more page-table work on this VM
 * (UFFDIO_REGISTER, MADV_DONTNEED of resident destination pages with its
 * TLB flush, zero fills and fresh-page faults of the fringes: about 8 us per
 * copy under Redis) than the copy itself (0.6 us into warm memory) plus
 * the comparison at output (0.7 us).  Below ZIO_LINK_MAX copies from stack
 * originals are therefore plain and linked where that is cheaper (which
 * ones: zio_copy.c, copy_round), the others are elided and only their
 * fringes are linked (fringe bytes then reach the log as part of the
 * reference, not inline).
 *
 * A link is a hint, never trusted: the program may change linked bytes
 * behind libzio (small copies and stores are not seen), so an output
 * compares every linked part with its original (memcmp, after pinning the
 * original, outside zio_lock) and sends the program's own bytes where they
 * differ.  What makes a verified substitution right is that the original
 * stays unchanged until the output call is done (pins) and afterwards as
 * long as a reference to it lives (libtas asks zio_release_if_unshared,
 * which counts links as dependents, and strata_ref_busy).
 *
 * Links are dropped (no fill: the destination holds its bytes) when their
 * original is released, when their destination is copied over, read into,
 * freed, unmapped or becomes an intermediate, by the GC after ZIO_GC_AGE_MS,
 * and the oldest when the set is full.  At most LINK_CAP, unsorted: every
 * operation is a scan of a few cache lines.  zio_lock held but the hints.
 */
#include "zio_internal.h"

#include "zio/zio_api.h"

#include <string.h>

#define LINK_CAP 64

struct link {
    uintptr_t lo, hi;   /* destination bytes */
    uintptr_t src;      /* original byte of lo */
    uint64_t made;      /* ns: age for the GC, order for replacement */
};

static struct link lk[LINK_CAP];
static size_t nlk;
/* lock-free hints: hulls of the destinations and of the sources */
static uintptr_t dlo = UINTPTR_MAX, dhi, slo = UINTPTR_MAX, shi;

static uintptr_t umax(uintptr_t a, uintptr_t b) { return a > b ? a : b; }
static uintptr_t umin(uintptr_t a, uintptr_t b) { return a < b ? a : b; }

static void hulls(void)
{
    uintptr_t a = UINTPTR_MAX, b = 0, c = UINTPTR_MAX, d = 0;
    for (size_t k = 0; k < nlk; k++) {
        a = umin(a, lk[k].lo), b = umax(b, lk[k].hi);
        c = umin(c, lk[k].src), d = umax(d, lk[k].src + (lk[k].hi - lk[k].lo));
    }
    __atomic_store_n(&dlo, a, __ATOMIC_RELAXED);
    __atomic_store_n(&dhi, b, __ATOMIC_RELAXED);
    __atomic_store_n(&slo, c, __ATOMIC_RELAXED);
    __atomic_store_n(&shi, d, __ATOMIC_RELAXED);
    ctr_set(C_LINKS_LIVE, nlk);
}

int link_overlaps(uintptr_t lo, uintptr_t hi)
{
    return __atomic_load_n(&dlo, __ATOMIC_RELAXED) < hi &&
           lo < __atomic_load_n(&dhi, __ATOMIC_RELAXED);
}

static int src_hull_overlaps(uintptr_t lo, uintptr_t hi)
{
    return __atomic_load_n(&slo, __ATOMIC_RELAXED) < hi &&
           lo < __atomic_load_n(&shi, __ATOMIC_RELAXED);
}

static void remove_at(size_t k)
{
    lk[k] = lk[--nlk];
}

/* drop destination bytes [lo,hi) from every link (they change); returns
 * how many links it touched */
static int cut_locked(uintptr_t lo, uintptr_t hi)
{
    int touched = 0;
    for (size_t k = 0; k < nlk;) {
        struct link *l = &lk[k];
        if (l->hi <= lo || hi <= l->lo) {
            k++;
            continue;
        }
        touched++;
        if (l->lo < lo && hi < l->hi && nlk < LINK_CAP) {   /* keep both ends */
            lk[nlk++] = (struct link){ hi, l->hi, l->src + (hi - l->lo), l->made };
            l->hi = lo;
            k++;
        } else if (l->lo < lo) {
            l->hi = lo;   /* (a middle cut with the set full loses the tail) */
            k++;
        } else if (hi < l->hi) {
            l->src += hi - l->lo;
            l->lo = hi;
            k++;
        } else {
            remove_at(k);
        }
    }
    return touched;
}

void link_cut(uintptr_t lo, uintptr_t hi)
{
    if (lo < hi && link_overlaps(lo, hi) && cut_locked(lo, hi))
        hulls();
}

/* the original bytes [lo,hi) are released (may change): drop the links to
 * them whole; their destinations hold the bytes anyway */
void link_drop_src(uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi || !src_hull_overlaps(lo, hi))
        return;
    size_t before = nlk;
    for (size_t k = 0; k < nlk;) {
        if (lk[k].src < hi && lo < lk[k].src + (lk[k].hi - lk[k].lo))
            remove_at(k);
        else
            k++;
    }
    if (nlk != before)
        hulls();
}

int link_has_src(uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi || !src_hull_overlaps(lo, hi))
        return 0;
    for (size_t k = 0; k < nlk; k++)
        if (lk[k].src < hi && lo < lk[k].src + (lk[k].hi - lk[k].lo))
            return 1;
    return 0;
}

void link_drop_all(void)
{
    nlk = 0;
    hulls();
}

/* the GC: links older than the age go (periodic), so a destination the
 * program changed without libzio seeing it holds its ring bytes no longer */
void link_gc(uint64_t now)
{
    size_t before = nlk;
    for (size_t k = 0; k < nlk;) {
        if (now - lk[k].made >= zio_cfg.gc_age_ns)
            remove_at(k);
        else
            k++;
    }
    if (nlk != before)
        hulls();
}

/* [lo,hi) now holds the original bytes from src on; extends a link it
 * continues in both memory and source */
static void add_locked(uintptr_t lo, uintptr_t hi, uintptr_t src, uint64_t now)
{
    cut_locked(lo, hi);
    for (size_t k = 0; k < nlk; k++) {
        struct link *l = &lk[k];
        if (l->hi == lo && l->src + (l->hi - l->lo) == src) {
            l->hi = hi;
            l->made = now;
            return;
        }
        if (l->lo == hi && src + (hi - lo) == l->src) {
            l->lo = lo;
            l->src = src;
            l->made = now;
            return;
        }
    }
    if (nlk == LINK_CAP) {   /* full: the oldest goes (a link is only a hint) */
        size_t old = 0;
        for (size_t k = 1; k < nlk; k++)
            if (lk[k].made < lk[old].made)
                old = k;
        remove_at(old);
    }
    lk[nlk++] = (struct link){ lo, hi, src, now };
}

/* The NVM original byte that source byte a holds (directly, through an
 * intermediate or a link), or 0; *stop: where that stays contiguous (and
 * inside one original), at most end. */
static uintptr_t origin(uintptr_t a, uintptr_t end, uintptr_t *stop)
{
    size_t i = tab_lower(a);
    uintptr_t o = 0, next = i < zio_tab_n ? zio_tab[i].addr : UINTPTR_MAX;
    *stop = umin(end, next);
    if (next <= a) {
        const struct zio_entry *e = &zio_tab[i];
        *stop = umin(end, ze_end(e));
        o = e->kind == ZE_INTER ? ze_src(e) + (a - e->addr) : a;
    } else {
        for (size_t k = 0; k < nlk; k++) {
            if (lk[k].lo <= a && a < lk[k].hi) {
                *stop = umin(*stop, lk[k].hi);
                o = lk[k].src + (a - lk[k].lo);
                break;
            }
            if (lk[k].lo > a)
                *stop = umin(*stop, lk[k].lo);
        }
    }
    if (o == 0)
        return 0;
    int j = tab_find(o);   /* links point at NVM originals only */
    if (j < 0 || zio_tab[j].kind != ZE_ORIGINAL || !(zio_tab[j].flags & ZIO_ORIG_NVM))
        return 0;
    *stop = umin(*stop, a + (ze_end(&zio_tab[j]) - o));
    return o;
}

int link_src_nvm(uintptr_t s, size_t n)
{
    uintptr_t stop;
    for (uintptr_t a = s; a < s + n; a = stop)
        if (origin(a, s + n, &stop) != 0)
            return 1;
    return 0;
}

/* A plain copy [s, s+n) -> [d, d+n) (not overlapping) is about to run:
 * link the parts whose source is an NVM original, unlink the rest.
 * Returns the bytes linked. */
size_t link_record(uintptr_t d, uintptr_t s, size_t n)
{
    struct { uintptr_t at, len, o; } part[16];
    int np = 0;
    uintptr_t stop;
    for (uintptr_t a = s; a < s + n && np < 16; a = stop) {
        uintptr_t o = origin(a, s + n, &stop);
        if (o != 0)
            part[np].at = a - s + d, part[np].len = stop - a, part[np++].o = o;
    }
    if (np == 0 && !link_overlaps(d, d + n))
        return 0;
    cut_locked(d, d + n);
    uint64_t now = zio_now_ns();
    size_t bytes = 0;
    for (int k = 0; k < np; k++) {
        add_locked(part[k].at, part[k].at + part[k].len, part[k].o, now);
        bytes += part[k].len;
    }
    hulls();
    ctr_add(C_BYTES_LINKED, bytes);
    return bytes;
}

/* An overlapping move [s, s+n) -> [d, d+n): the links of the source bytes
 * move along (the destination's old links go).  Returns the bytes moved
 * linked. */
size_t link_move(uintptr_t d, uintptr_t s, size_t n)
{
    if (!link_overlaps(s, s + n) && !link_overlaps(d, d + n))
        return 0;
    struct link moved[LINK_CAP];
    size_t nm = 0, bytes = 0;
    for (size_t k = 0; k < nlk; k++) {
        uintptr_t a = umax(lk[k].lo, s), b = umin(lk[k].hi, s + n);
        if (a < b)
            moved[nm++] = (struct link){ a - s + d, b - s + d, lk[k].src + (a - lk[k].lo),
                                         lk[k].made };
    }
    cut_locked(d, d + n);
    for (size_t k = 0; k < nm; k++) {
        add_locked(moved[k].lo, moved[k].hi, moved[k].src, moved[k].made);
        bytes += moved[k].hi - moved[k].lo;
    }
    hulls();
    ctr_add(C_BYTES_LINKED, bytes);
    return bytes;
}

/* Is a linked part [a,b) of an output worth sending as its original o?
 * When it continues the original piece before it or after it (an
 * intermediate's, in an output going on to `end`), or on its own from the
 * threshold and ZIO_LINK_OUT_MIN (default 0) on.  Below that the output
 * carries the program's own bytes, with no comparison, and a log takes them
 * inline: one copy, which ORP exists to avoid, so only by choice.  On this
 * VM it is cheaper below 512 KiB: persisting a referenced ring extent in
 * place (clwb of lines another core wrote) plus the comparison costs more
 * than the log's streaming copy (zio/README.md, "Links"). */
static int worth(const struct iovec *out, int k, uintptr_t a, uintptr_t b, uintptr_t o,
                 uintptr_t end)
{
    if (b - a >= zio_cfg.threshold && b - a >= zio_cfg.link_out_min)
        return 1;
    if (k > 0 && (uintptr_t)out[k - 1].iov_base + out[k - 1].iov_len == o)
        return 1;
    int j = b < end ? tab_find(b) : -1;
    return j >= 0 && zio_tab[j].kind == ZE_INTER &&
           ze_src(&zio_tab[j]) + (b - zio_tab[j].addr) == o + (b - a);
}

/* Output resolution of plain bytes [lo,hi) of an output ending at end:
 * linked parts as their originals (each noted in chk for the comparison),
 * the rest in place.  Returns the new iovec count, or -1 (E2BIG). */
int link_emit(uintptr_t lo, uintptr_t hi, uintptr_t end, struct iovec *out, int k, int max,
              struct link_chk *chk)
{
    while (lo < hi && k >= 0) {
        size_t best = LINK_CAP;   /* the first link at or after lo */
        for (size_t j = 0; j < nlk; j++)
            if (lk[j].hi > lo && lk[j].lo < hi && (best == LINK_CAP || lk[j].lo < lk[best].lo))
                best = j;
        if (best == LINK_CAP || chk->n == LINK_CHK_MAX)
            return iov_emit(out, k, max, lo, hi - lo);
        const struct link *l = &lk[best];
        uintptr_t a = umax(lo, l->lo), b = umin(hi, l->hi);
        if (a > lo)
            k = iov_emit(out, k, max, lo, a - lo);
        uintptr_t o = l->src + (a - l->lo);
        int j = tab_find(o);   /* still an NVM original (always: a release drops links) */
        if (k >= 0 && j >= 0 && zio_tab[j].kind == ZE_ORIGINAL && o + (b - a) <= ze_end(&zio_tab[j]) &&
            worth(out, k, a, b, o, end)) {
            chk->c[chk->n].dst = a, chk->c[chk->n].src = o, chk->c[chk->n++].len = b - a;
            k = iov_emit(out, k, max, o, b - a);
        } else if (k >= 0) {
            k = iov_emit(out, k, max, a, b - a);
        }
        lo = b;
    }
    return k;
}

/* After the originals are pinned and zio_lock dropped: does every linked
 * part still equal its original?  Returns the first that does not, or -1. */
int link_verify(const struct link_chk *chk)
{
    for (int i = 0; i < chk->n; i++)
        if (memcmp((const void *)chk->c[i].dst, (const void *)chk->c[i].src, chk->c[i].len) != 0)
            return i;
    return -1;
}
