/*
 * Index of the intermediates' sources: "which intermediates depend on the
 * original bytes [lo,hi)?" without walking the whole table.
 *
 * Why: a stack on ORP asks that for every ring page it wants back
 * (zio_release_if_unshared, and zio_register_original releases first),
 * while Redis keeps about one intermediate per stored value alive until
 * the GC fills it; a walk of 1000 entries cost ~2.5 us, three walks per
 * page.  The index is a sorted array of source ranges (by start), with the
 * longest range length seen since it was last empty: a range overlapping
 * [lo,hi) starts in [lo - longest, hi).  zio_table.c keeps it in step with
 * every insert, removal and cut of an intermediate; zio_lock held
 * throughout.  ZIO_CHECK_INDEX=1 (tests) compares every answer with a walk.
 */
#include "zio_internal.h"

#include <stdlib.h>
#include <sys/mman.h>
#include "kb/env.h"

struct src_ref {
    uintptr_t lo, hi;   /* source bytes */
    uintptr_t addr;     /* the intermediate's core */
};

static struct src_ref *idx;
static size_t idx_n, idx_cap, longest;
static int check_walk;

int srcidx_init(size_t cap)
{
    void *m = mmap(NULL, cap * sizeof(*idx), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    idx = m;
    idx_cap = cap;
    const char *c = kb_getenv("ZIO_CHECK_INDEX");
    check_walk = c && *c == '1';
    return 0;
}

void srcidx_reset(void)
{
    idx_n = 0;
    longest = 0;
}

/* first reference with lo >= a */
static size_t lower(uintptr_t a)
{
    size_t l = 0, h = idx_n;
    while (l < h) {
        size_t m = (l + h) / 2;
        if (idx[m].lo < a)
            l = m + 1;
        else
            h = m;
    }
    return l;
}

void srcidx_add(const struct zio_entry *e)
{
    if (idx_n == idx_cap)
        return;   /* cannot happen: one reference per table entry */
    struct src_ref r = { ze_src(e), ze_src(e) + e->npages * ZIO_PAGE, e->addr };
    size_t i = lower(r.lo);
    zio_plain_move(&idx[i + 1], &idx[i], (idx_n - i) * sizeof(*idx));
    idx[i] = r;
    idx_n++;
    if (r.hi - r.lo > longest)
        longest = r.hi - r.lo;
}

void srcidx_del(const struct zio_entry *e)
{
    for (size_t i = lower(ze_src(e)); i < idx_n && idx[i].lo == ze_src(e); i++) {
        if (idx[i].addr != e->addr)
            continue;
        zio_plain_move(&idx[i], &idx[i + 1], (idx_n - i - 1) * sizeof(*idx));
        if (--idx_n == 0)
            longest = 0;
        return;
    }
}

static int walk_find(uintptr_t lo, uintptr_t hi, uintptr_t *addr)
{
    for (size_t i = 0; i < zio_tab_n; i++) {
        const struct zio_entry *e = &zio_tab[i];
        if (e->kind == ZE_INTER && ze_src(e) < hi && ze_src(e) + e->npages * ZIO_PAGE > lo) {
            *addr = e->addr;
            return 1;
        }
    }
    return 0;
}

int srcidx_find(uintptr_t lo, uintptr_t hi, uintptr_t *addr)
{
    int found = 0;
    for (size_t i = lower(lo > longest ? lo - longest : 0); i < idx_n && idx[i].lo < hi; i++) {
        if (idx[i].hi > lo) {
            *addr = idx[i].addr;
            found = 1;
            break;
        }
    }
    if (check_walk) {
        uintptr_t a;
        if (walk_find(lo, hi, &a) != found || idx_n != zio_inter_n) {
            zio_log("source index out of step with the table");
            abort();
        }
    }
    return found;
}
