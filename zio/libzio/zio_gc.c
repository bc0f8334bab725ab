/*
 * Garbage collection and deferred frees (dissertation 4.2.1.4, 4.2.1.7).
 *
 * free() of an original whose bytes intermediates still depend on only marks
 * it freed and parks the allocation here; it is really freed once no
 * intermediate depends on it.  gc_run evicts least-recently-used entries
 * (evicting an intermediate fills it from its original) when the table
 * passes its bound, and, from the handler thread once per second, every
 * entry idle for longer than the configured age.
 */
#include "zio_internal.h"

#define DEFER_MAX 1024
#define KEEP_MAX 64   /* intermediates of one freed allocation kept idle one by one */

struct deferred {
    void *p;
    uintptr_t lo, hi;
};

static struct deferred dq[DEFER_MAX];
static size_t dqn;

int gc_defer_free(void *p, uintptr_t lo, uintptr_t hi)
{
    if (dqn == DEFER_MAX)
        return -1;
    dq[dqn++] = (struct deferred){ p, lo, hi };
    ctr_add(C_FREES_DEFERRED, 1);
    return 0;
}

/* Index of the entry to evict next, or -1.  Freed originals are never picked:
 * evicting their dependents is what releases them. */
static int victim(int periodic, uint64_t now)
{
    int best = -1;
    for (size_t i = 0; i < zio_tab_n; i++) {
        const struct zio_entry *e = &zio_tab[i];
        if (e->freed)
            continue;
        if (periodic && now - e->last_use < zio_cfg.gc_age_ns)
            continue;
        if (best < 0 || e->last_use < zio_tab[best].last_use)
            best = (int)i;
    }
    return best;
}

size_t gc_run(int periodic, void **frees, size_t max)
{
    uint64_t now = zio_now_ns();
    size_t target = periodic ? zio_cfg.gc_max : zio_cfg.gc_max * 3 / 4;
    ctr_add(C_GC_RUNS, 1);
    if (periodic)
        link_gc(now);
    for (int i; (i = victim(periodic, now)) >= 0;) {
        if (!periodic && zio_tab_n <= target)
            break;
        track_evict((size_t)i);
    }
    size_t nf = 0;
    for (size_t k = 0; k < dqn && nf < max;) {
        if (track_has_dependents(dq[k].lo, dq[k].hi)) {
            k++;
            continue;
        }
        track_release_originals(dq[k].lo, dq[k].hi);
        frees[nf++] = dq[k].p;
        dq[k] = dq[--dqn];
        ctr_add(C_GC_FREES, 1);
    }
    return nf;
}

void gc_free_later(void **frees, size_t n)
{
    for (size_t k = 0; k < n; k++)
        zio_real.free(frees[k]);
}

/* free() of memory that may hold tracked entries (called without the lock). */
void zio_free_tracked(void *p)
{
    size_t usable = zio_real.malloc_usable_size(p);
    uintptr_t lo = pg_ceil((uintptr_t)p), hi = pg_floor((uintptr_t)p + usable);
    void *frees[GC_FREE_BATCH];
    size_t nf = 0;
    int deferred = 0;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    link_cut((uintptr_t)p, (uintptr_t)p + usable);
    size_t first = tab_lower(lo);
    if (lo < hi && first < zio_tab_n && zio_tab[first].addr < hi) {
        int originals = 0, nk = 0;
        uintptr_t keep[KEEP_MAX][2];   /* the intermediates' (registered) pages */
        /* intermediates here were never needed: the elision succeeded */
        for (size_t i = tab_lower(lo); i < zio_tab_n && zio_tab[i].addr < hi;) {
            struct zio_entry *e = &zio_tab[i];
            if (e->kind != ZE_INTER) {
                originals = 1;
                i++;
                continue;
            }
            ctr_add(C_FREES_INTER, 1);
            uintptr_t start = e->addr;
            uintptr_t a = start > lo ? start : lo, b = ze_end(e) < hi ? ze_end(e) : hi;
            if (nk > 0 && nk <= KEEP_MAX && keep[nk - 1][1] == a)
                keep[nk - 1][1] = b;
            else if (nk < KEEP_MAX)
                keep[nk][0] = a, keep[nk++][1] = b;
            else
                nk = KEEP_MAX + 1;   /* too many: the whole allocation is kept (a hint) */
            size_t before = zio_tab_n;
            tab_cut(i, lo, hi);
            if (zio_tab_n >= before && zio_tab[i].addr == start)
                i++;
        }
        if (zio_mode == ZIO_ELIDE && track_has_dependents(lo, hi)) {
            deferred = gc_defer_free(p, lo, hi) == 0;
            for (size_t i = tab_lower(lo); deferred && i < zio_tab_n && zio_tab[i].addr < hi; i++)
                zio_tab[i].freed = 1;
        }
        if (!deferred && originals) {
            track_release_originals(lo, hi);   /* fills dependents if any */
            reg_unregister(lo, hi);
        } else if (!deferred && zio_mode == ZIO_ELIDE) {
            /* the next elision here need not register: only what is
             * registered (the fringes beside the intermediates are not) */
            if (nk > KEEP_MAX)
                reg_keep(lo, hi);
            for (int k = 0; k < nk && nk <= KEEP_MAX; k++)
                reg_keep(keep[k][0], keep[k][1]);
        }
    }
    if (dqn > 0 && dqn * 2 >= DEFER_MAX)
        nf = gc_run(0, frees, GC_FREE_BATCH);
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    gc_free_later(frees, nf);
    if (!deferred)
        zio_real.free(p);
}
