/*
 * Tracking table: entries sorted by core address in one contiguous array,
 * searched by binary search.
 *
 * Why not the paper's skiplist: the table is small (the dissertation measured
 * at most 640 entries for Redis with 64 clients), every operation already
 * holds the global lock, and a sorted array answers "first entry ending after
 * X" in log2(n) cache-friendly probes with no pointer chasing or per-node
 * allocation.  Inserting shifts the tail with one memmove, which for a few
 * thousand 56-byte entries costs less than a skiplist's random node walks and
 * needs no allocator (we must never call malloc while holding the lock, since
 * the allocator may itself be inside memcpy).  Entries never overlap: a byte
 * of memory is either an original, an intermediate, or untracked.
 */
#include "zio_internal.h"

#include <sys/mman.h>

/* zio_tab, zio_tab_n, zio_tab_cap, zio_inter_n: zio_base.c */
uintptr_t zio_hull_lo = UINTPTR_MAX, zio_hull_hi;

static void hull_update(void)
{
    if (zio_tab_n == 0) {
        __atomic_store_n(&zio_hull_lo, UINTPTR_MAX, __ATOMIC_RELAXED);
        __atomic_store_n(&zio_hull_hi, 0, __ATOMIC_RELAXED);
    }
    ctr_set(C_ENTRIES_LIVE, zio_tab_n);
}

size_t tab_lower(uintptr_t a)
{
    size_t lo = 0, hi = zio_tab_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ze_end(&zio_tab[mid]) <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int tab_find(uintptr_t a)
{
    size_t i = tab_lower(a);
    if (i < zio_tab_n && zio_tab[i].addr <= a)
        return (int)i;
    return -1;
}

int tab_overlaps(uintptr_t lo, uintptr_t hi)
{
    return __atomic_load_n(&zio_hull_lo, __ATOMIC_RELAXED) < hi &&
           lo < __atomic_load_n(&zio_hull_hi, __ATOMIC_RELAXED);
}

int tab_insert(const struct zio_entry *e)
{
    if (zio_tab_n == zio_tab_cap || e->npages == 0)
        return -1;
    reg_take(e->addr, ze_end(e));   /* tracked memory is never idle */
    size_t i = tab_lower(e->addr);
    zio_plain_move(&zio_tab[i + 1], &zio_tab[i], (zio_tab_n - i) * sizeof(*e));
    zio_tab[i] = *e;
    zio_tab_n++;
    if (e->kind == ZE_INTER) {
        zio_inter_n++;
        srcidx_add(e);
    }
    if (e->addr < zio_hull_lo)
        __atomic_store_n(&zio_hull_lo, e->addr, __ATOMIC_RELAXED);
    if (ze_end(e) > zio_hull_hi)
        __atomic_store_n(&zio_hull_hi, ze_end(e), __ATOMIC_RELAXED);
    hull_update();
    return 0;
}

/* A piece that continues the intermediate right before it, from the bytes
 * right after that one's source in the same original, extends it instead of
 * becoming an entry of its own.  A stream elided a few pages at a time
 * (zio_copy_continued) then stays one entry, and a later copy of it to
 * memory at another page offset finds whole pages under one entry. */
int tab_extend_inter(const struct zio_entry *e)
{
    size_t i = tab_lower(e->addr);
    if (i == 0)
        return -1;
    struct zio_entry *prev = &zio_tab[i - 1];
    uintptr_t src = ze_src(e);
    if (prev->kind != ZE_INTER || ze_end(prev) != e->addr || prev->key != e->key ||
        ze_src(prev) + prev->npages * ZIO_PAGE != src)
        return -1;
    int o = tab_find(ze_src(prev));
    if (o < 0 || zio_tab[o].kind != ZE_ORIGINAL ||
        ze_end(&zio_tab[o]) < src + e->npages * ZIO_PAGE)
        return -1;   /* one intermediate depends on one original */
    reg_take(e->addr, ze_end(e));
    srcidx_del(prev);
    prev->npages += e->npages;
    prev->last_use = e->last_use;
    srcidx_add(prev);
    if (ze_end(prev) > zio_hull_hi)
        __atomic_store_n(&zio_hull_hi, ze_end(prev), __ATOMIC_RELAXED);
    hull_update();
    return 0;
}

/* remove entry i (already out of the source index) */
static void remove_at(size_t i)
{
    zio_inter_n -= zio_tab[i].kind == ZE_INTER;
    zio_plain_move(&zio_tab[i], &zio_tab[i + 1], (zio_tab_n - i - 1) * sizeof(zio_tab[0]));
    zio_tab_n--;
    hull_update();
}

void tab_remove(size_t i)
{
    if (zio_tab[i].kind == ZE_INTER)
        srcidx_del(&zio_tab[i]);
    remove_at(i);
}

void tab_set_src(struct zio_entry *e, uintptr_t src)
{
    e->orig = pg_floor(src);
    e->lfringe = (uint32_t)(src - e->orig);
}

/* Remove pages [lo,hi) from entry i; the part after them becomes its own
 * entry (a split), the part before stays in place. */
void tab_cut(size_t i, uintptr_t lo, uintptr_t hi)
{
    struct zio_entry *e = &zio_tab[i];
    uintptr_t start = e->addr, end = ze_end(e);
    if (lo < start)
        lo = start;
    if (hi > end)
        hi = end;
    if (lo >= hi)
        return;
    struct zio_entry right = *e;
    right.addr = hi;
    right.npages = (end - hi) / ZIO_PAGE;
    tab_set_src(&right, ze_src(e) + (hi - start));
    if (e->kind == ZE_INTER)
        srcidx_del(e);   /* its source range shrinks (or goes) */
    e->npages = (lo - start) / ZIO_PAGE;
    if (e->npages == 0)
        remove_at(i);
    else if (e->kind == ZE_INTER)
        srcidx_add(e);
    if (right.npages) {
        if (lo > start)
            ctr_add(C_SPLITS, 1);
        /* cannot fail for lack of room when the left part was removed;
         * otherwise a full table drops the right part (it stays unmapped and
         * registered, so fill it first) */
        if (tab_insert(&right) != 0) {
            if (right.kind == ZE_INTER)
                uffd_fill(right.addr, ze_src(&right), right.npages * ZIO_PAGE);
            else if (right.protect)
                uffd_protect(right.addr, ze_end(&right), 0);
        }
    }
}
