/*
 * Operations on tracked memory (dissertation 4.2.1.1-4.2.1.5).  All of them
 * run with zio_lock held and move data only with userfaultfd ioctls whose
 * source is an original (always mapped), see zio_internal.h.
 */
#include "zio_internal.h"

#include "zio/zio_api.h"


static uintptr_t umax(uintptr_t a, uintptr_t b) { return a > b ? a : b; }
static uintptr_t umin(uintptr_t a, uintptr_t b) { return a < b ? a : b; }

/* [lo,hi) (page aligned) no longer holds any entry: drop its registration
 * so later page faults there (after the allocator recycles or purges the
 * memory) are ordinary kernel faults, not trips through the handler. */
static void unregister_if_untracked(uintptr_t lo, uintptr_t hi)
{
    size_t i = tab_lower(lo);
    if (lo < hi && (i == zio_tab_n || zio_tab[i].addr >= hi))
        reg_unregister(lo, hi);
}

/* Materialise intermediate pages [lo,hi) of entry i and stop tracking them.
 * Returns the bytes filled. */
size_t track_fill(size_t i, uintptr_t lo, uintptr_t hi)
{
    struct zio_entry *e = &zio_tab[i];
    lo = umax(lo, e->addr);
    hi = umin(hi, ze_end(e));
    if (lo >= hi)
        return 0;
    uffd_fill(lo, ze_src(e) + (lo - e->addr), hi - lo);
    tab_cut(i, lo, hi);
    return hi - lo;
}

int track_has_dependents(uintptr_t lo, uintptr_t hi)
{
    uintptr_t addr;
    return (zio_inter_n > 0 && srcidx_find(lo, hi, &addr)) || link_has_src(lo, hi);
}

/* The original bytes [lo,hi) (page aligned) are about to change: push them to
 * every intermediate derived from them, then stop treating them as an
 * original (unprotect, unregister).  Returns the bytes filled into those
 * dependents. */
size_t track_release_originals(uintptr_t lo, uintptr_t hi)
{
    size_t filled = 0;
    pins_wait(lo, hi);   /* an output may still be reading them */
    link_drop_src(lo, hi);   /* linked copies hold their bytes already */
    uintptr_t dep;
    while (zio_inter_n > 0 && srcidx_find(lo, hi, &dep)) {
        int i = tab_find(dep);
        if (i < 0)
            break;   /* cannot happen: the index follows the table */
        struct zio_entry *e = &zio_tab[i];
        uintptr_t s = ze_src(e), send = s + e->npages * ZIO_PAGE;
        /* the parts left after the fill no longer overlap [lo,hi) */
        size_t n = track_fill((size_t)i, pg_floor(e->addr + (umax(lo, s) - s)),
                              pg_ceil(e->addr + (umin(hi, send) - s)));
        if (n == 0)
            break;   /* cannot happen either; never spin */
        filled += n;
    }
    for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < hi;) {
        struct zio_entry *e = &zio_tab[i];
        if (e->kind != ZE_ORIGINAL) {
            i++;
            continue;
        }
        uintptr_t a = umax(lo, e->addr), b = umin(hi, ze_end(e));
        /* stays registered in WP mode: the next input into this buffer is
         * likely to be protected again (free() unregisters) */
        if (e->protect)
            uffd_protect(a, b, 0);
        size_t before = zio_tab_n;
        uintptr_t start = e->addr;
        tab_cut(i, a, b);
        if (zio_tab_n >= before && zio_tab[i].addr == start)
            i++;   /* left part stayed at i */
    }
    return filled;
}

/* Fill the intermediate pages of [lo,hi) (page aligned) and release the
 * originals there; returns the bytes pushed to dependents elsewhere. */
static size_t fill_and_release(uintptr_t lo, uintptr_t hi)
{
    for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < hi;) {
        if (zio_tab[i].kind == ZE_INTER && ze_end(&zio_tab[i]) > lo)
            track_fill(i, lo, hi);   /* leaves a part ending at lo, or none */
        else
            i++;
    }
    return track_release_originals(lo, hi);
}

/* Make [lo,hi) ordinary memory again: fill intermediate pages, release
 * originals.  Used before input into a range and by zio_release().  Returns
 * the bytes filled into intermediates elsewhere that depended on originals
 * here (not the range's own intermediate pages). */
size_t track_materialize(uintptr_t lo, uintptr_t hi)
{
    lo = pg_floor(lo);
    hi = pg_ceil(hi);
    /* Only intermediates leave a MISSING registration worth dropping.  An
     * original keeps its WP registration: the input that follows is usually
     * protected again, and unregistering a WP range costs a second pass over
     * its page tables (clearing WP bits) plus a VMA merge, and registering
     * again a split (together about 10 us at 64 pages, 40 us at 256). */
    int registered = 0;
    for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < hi && !registered; i++)
        registered = zio_tab[i].kind == ZE_INTER;
    size_t filled = fill_and_release(lo, hi);
    if (registered)
        unregister_if_untracked(lo, hi);
    return filled;
}

/* Like track_materialize() but keeps the MISSING registration: for pages
 * that are about to be written right away (the fringes of a re-pointed
 * move), where unregistering would only split the VMA. */
void track_fill_range(uintptr_t lo, uintptr_t hi)
{
    fill_and_release(pg_floor(lo), pg_ceil(hi));
}

/* Whole pages [lo,hi) are about to be overwritten entirely: intermediate
 * pages there need no fill (just forget them), originals are released.
 * Returns how many intermediate pages were forgotten (they are still
 * unmapped and registered). */
size_t track_drop_overwritten(uintptr_t lo, uintptr_t hi)
{
    size_t dropped = 0;
    lo = pg_ceil(lo);
    hi = pg_floor(hi);
    if (lo >= hi)
        return 0;
    for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < hi;) {
        struct zio_entry *e = &zio_tab[i];
        if (e->kind != ZE_INTER) {
            i++;
            continue;
        }
        uintptr_t start = e->addr;
        size_t before = zio_tab_n;
        dropped += (umin(hi, ze_end(e)) - umax(lo, start)) / ZIO_PAGE;
        tab_cut(i, lo, hi);
        if (zio_tab_n >= before && zio_tab[i].addr == start)
            i++;
    }
    track_release_originals(lo, hi);
    return dropped;
}

void track_evict(size_t i)
{
    struct zio_entry *e = &zio_tab[i];
    uintptr_t lo = e->addr, hi = ze_end(e);
    size_t before = zio_tab_n;
    if (e->kind == ZE_INTER) {
        track_fill(i, lo, hi);
        reg_unregister(lo, hi);
    } else {
        track_release_originals(lo, hi);   /* fills its dependents too */
    }
    /* every entry gone counts: releasing an original evicts the
     * intermediates that depended on it */
    ctr_add(C_GC_EVICTIONS, before > zio_tab_n ? before - zio_tab_n : 1);
}

/* Record [lo,hi) (page aligned, already ordinary memory) as an original.
 * Extends an adjacent unprotected original of the same input site, so data
 * read in several chunks forms one original. */
int track_add_original(uintptr_t lo, uintptr_t hi, unsigned flags, uintptr_t key)
{
    if (lo >= hi)
        return 0;
    if (flags & ZIO_ORIG_NVM)
        flags |= ZIO_ORIG_NOPROTECT;
    size_t i = tab_lower(lo);
    if (i < zio_tab_n && zio_tab[i].addr < hi)
        return -1;   /* tracked meanwhile (racing threads): keep entries disjoint */
    if (i > 0) {
        struct zio_entry *p = &zio_tab[i - 1];
        if (p->kind == ZE_ORIGINAL && ze_end(p) == lo && !p->protect && !p->freed &&
            p->key == key && p->flags == flags &&
            (i == zio_tab_n || zio_tab[i].addr >= hi)) {
            reg_take(lo, hi);
            p->npages += (hi - lo) / ZIO_PAGE;
            p->last_use = zio_now_ns();
            if (hi > zio_hull_hi)
                __atomic_store_n(&zio_hull_hi, hi, __ATOMIC_RELAXED);
            return 0;
        }
    }
    struct zio_entry e = {
        .addr = lo, .npages = (hi - lo) / ZIO_PAGE, .orig = lo, .lfringe = 0,
        .kind = ZE_ORIGINAL, .flags = (uint8_t)flags, .key = key,
        .last_use = zio_now_ns(),
    };
    if (tab_insert(&e) != 0)
        return -1;
    ctr_add(C_ORIGINALS, 1);
    return 0;
}

/* Describe [a, a+n) as iovecs, intermediate parts replaced by originals;
 * with chk, linked parts too (zio_link.c: compare them before use). */
int track_resolve(uintptr_t a, size_t n, struct iovec *out, int max, struct link_chk *chk)
{
    uintptr_t pos = a, end = a + n;
    int k = 0;
    size_t i = tab_lower(a);
    while (pos < end && k >= 0) {
        while (i < zio_tab_n && zio_tab[i].addr < end && zio_tab[i].kind != ZE_INTER)
            i++;
        int hit = i < zio_tab_n && zio_tab[i].addr < end;
        uintptr_t next = hit ? umax(pos, zio_tab[i].addr) : end;
        if (next > pos) {
            k = chk ? link_emit(pos, next, end, out, k, max, chk) : iov_emit(out, k, max, pos, next - pos);
            pos = next;
        }
        if (hit && k >= 0) {
            const struct zio_entry *e = &zio_tab[i++];
            uintptr_t stop = umin(end, ze_end(e));
            k = iov_emit(out, k, max, ze_src(e) + (pos - e->addr), stop - pos);
            pos = stop;
        }
    }
    return k;
}

/* Serve one fault (dissertation 4.2.1.5). */
void track_fault(uintptr_t addr, int wp)
{
    int i = tab_find(addr);
    if (wp) {
        ctr_add(C_FAULTS_WP, 1);
        if (i >= 0 && zio_tab[i].kind == ZE_ORIGINAL)
            policy_faulted(zio_tab[i].key, ZIO_PAGE);
        if (i >= 0 && zio_tab[i].kind == ZE_ORIGINAL)
        {
            track_release_originals(addr, addr + ZIO_PAGE);
            uffd_wake(addr, ZIO_PAGE);
        }
        else
            uffd_protect(addr, addr + ZIO_PAGE, 0);   /* stale bit: unprotect, wake */
        return;
    }
    if (i < 0 || zio_tab[i].kind != ZE_INTER) {
        ctr_add(C_FAULTS_ZERO, 1);   /* registered, untracked: fresh memory */
        if (!reg_fault(addr))
            uffd_zero(addr);
        return;
    }
    ctr_add(C_FAULTS_MISSING, 1);
    struct zio_entry e = zio_tab[i];
    policy_faulted(e.key, ZIO_PAGE);
    track_fill((size_t)i, addr, addr + ZIO_PAGE);
    /* a remainder below the threshold is not worth tracking: fill it now */
    uintptr_t parts[2][2] = { { e.addr, addr }, { addr + ZIO_PAGE, ze_end(&e) } };
    for (int p = 0; p < 2; p++) {
        if (parts[p][1] <= parts[p][0] || parts[p][1] - parts[p][0] >= zio_cfg.threshold)
            continue;
        int j = tab_find(parts[p][0]);
        if (j >= 0)
            track_fill((size_t)j, parts[p][0], parts[p][1]);
    }
    unregister_if_untracked(e.addr, ze_end(&e));   /* the whole copy faulted in */
}

/* Before fork: the child gets no userfaultfd context, so materialise all. */
void track_drop_all(void)
{
    link_drop_all();
    while (zio_tab_n > 0) {
        struct zio_entry *e = &zio_tab[zio_tab_n - 1];
        if (e->kind == ZE_INTER) {
            uintptr_t lo = e->addr, hi = ze_end(e);
            track_fill(zio_tab_n - 1, lo, hi);
            reg_unregister(lo, hi);
        } else {
            track_release_originals(e->addr, ze_end(e));
        }
    }
}
