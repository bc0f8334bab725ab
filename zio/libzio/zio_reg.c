/*
 * Idle registrations: page ranges left registered in MISSING mode after the
 * intermediates in them were freed; their pages are absent (an
 * intermediate's pages are, and a page that gets mapped leaves the set),
 * but for an allocation that held more than 64 separate intermediates,
 * which is kept whole.
 *
 * Why: a program that frees a buffer whose copy was elided usually allocates
 * the same memory again for the next copy (an allocator hands back what was
 * just freed).  Unregistering at free and registering again at the next
 * elision costs a VMA merge and a split (2-6 us each on this VM); a
 * UFFDIO_REGISTER over a range that is still registered returns after a VMA
 * walk (0.4 us).  So free() leaves the registration in place and notes the
 * range here.
 *
 * The set is a hint, never trusted for correctness: an elision always calls
 * UFFDIO_REGISTER (cheap when still registered, and right when the allocator
 * unmapped and remapped the memory behind our back), and checks residency.
 * What the set is for is getting rid of the registration before memory that
 * is not an intermediate gets written:
 *   - a plain copy or an input into an idle range unregisters it first
 *     (reg_drop), so the kernel, not the handler thread, fills fresh pages;
 *   - a fault in an idle range (the program or allocator touching freed
 *     memory directly) unregisters the range, which wakes the faulting thread
 *     and lets the kernel serve it: one round trip per range, not per page;
 *   - a range that becomes tracked again leaves the set (reg_take), so the
 *     set never covers an intermediate or an original (a stale entry could
 *     otherwise unregister a protected original).
 * Unpopulated idle pages read as zeros either way, as after the old
 * unregister-at-free: their contents were freed.
 *
 * All functions but reg_overlaps() run with zio_lock held.
 */
#include "zio_internal.h"

#define REG_MAX 64

struct idle {
    uintptr_t lo, hi;
    uint64_t seq;   /* insertion order: the oldest goes when the set is full */
};

static struct idle idle[REG_MAX];
static size_t nidle;
static uint64_t seq;
static uintptr_t hull_lo = UINTPTR_MAX, hull_hi;   /* lock-free hint */

static void hull_update(void)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t k = 0; k < nidle; k++) {
        lo = idle[k].lo < lo ? idle[k].lo : lo;
        hi = idle[k].hi > hi ? idle[k].hi : hi;
    }
    __atomic_store_n(&hull_lo, lo, __ATOMIC_RELAXED);
    __atomic_store_n(&hull_hi, hi, __ATOMIC_RELAXED);
}

int reg_overlaps(uintptr_t lo, uintptr_t hi)
{
    return __atomic_load_n(&hull_lo, __ATOMIC_RELAXED) < hi &&
           lo < __atomic_load_n(&hull_hi, __ATOMIC_RELAXED);
}

static void remove_at(size_t k)
{
    idle[k] = idle[--nidle];
}

/* [lo,hi) (page aligned) holds no entry any more but stays registered. */
void reg_keep(uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi || zio_uffd < 0)
        return;
    /* absorb overlapping or adjacent ranges: one entry per contiguous span */
    for (size_t k = 0; k < nidle;) {
        if (idle[k].lo <= hi && lo <= idle[k].hi) {
            lo = idle[k].lo < lo ? idle[k].lo : lo;
            hi = idle[k].hi > hi ? idle[k].hi : hi;
            remove_at(k);
        } else {
            k++;
        }
    }
    if (nidle == REG_MAX) {
        size_t old = 0;
        for (size_t k = 1; k < nidle; k++)
            if (idle[k].seq < idle[old].seq)
                old = k;
        uffd_unregister(idle[old].lo, idle[old].hi);
        remove_at(old);
    }
    idle[nidle++] = (struct idle){ lo, hi, ++seq };
    hull_update();
}

/* Does an idle range overlap [lo,hi)?  (exact, unlike reg_overlaps) */
int reg_any(uintptr_t lo, uintptr_t hi)
{
    if (!reg_overlaps(lo, hi))
        return 0;
    for (size_t k = 0; k < nidle; k++)
        if (idle[k].lo < hi && lo < idle[k].hi)
            return 1;
    return 0;
}

/* [lo,hi) becomes tracked: it is no longer idle (its registration, if any,
 * now belongs to the new entry). */
void reg_take(uintptr_t lo, uintptr_t hi)
{
    if (!reg_overlaps(lo, hi))
        return;
    for (size_t k = 0; k < nidle;) {
        struct idle *r = &idle[k];
        if (r->hi <= lo || hi <= r->lo) {
            k++;
            continue;
        }
        if (r->lo < lo && hi < r->hi && nidle < REG_MAX) {   /* keep both ends */
            idle[nidle++] = (struct idle){ hi, r->hi, r->seq };
            r->hi = lo;
            k++;
        } else if (r->lo < lo) {
            if (hi < r->hi)   /* middle cut with the set full: let the tail go */
                uffd_unregister(hi, r->hi);
            r->hi = lo;
            k++;
        } else if (hi < r->hi) {
            r->lo = hi;
            k++;
        } else {
            remove_at(k);
        }
    }
    hull_update();
}

/* The set holds registered pages only: whatever unregisters memory goes
 * through here. */
void reg_unregister(uintptr_t lo, uintptr_t hi)
{
    uffd_unregister(lo, hi);
    reg_take(lo, hi);
}

/* Memory in [lo,hi) is about to be written plainly (or unmapped): unregister
 * every idle range touching it. */
void reg_drop(uintptr_t lo, uintptr_t hi)
{
    if (!reg_overlaps(lo, hi))
        return;
    for (size_t k = 0; k < nidle;) {
        if (idle[k].lo < hi && lo < idle[k].hi) {
            uffd_unregister(idle[k].lo, idle[k].hi);
            remove_at(k);
        } else {
            k++;
        }
    }
    hull_update();
}

/* A plain copy is about to write [lo,hi) (page aligned; the fringes beside
 * an elided piece, usually a page or two).  Idle pages there would fault
 * into the handler thread: fill them with zeros (what they read as anyway)
 * and let them leave the set, which holds absent pages only, but keep them
 * registered, so the next elision here finds its range registered (a cheap
 * UFFDIO_REGISTER, no VMA split) instead of unregistering all of it now and
 * registering it again then.  A larger write drops the idle ranges it
 * touches (reg_drop). */
void reg_prepare_write(uintptr_t lo, uintptr_t hi)
{
    if (!reg_overlaps(lo, hi))
        return;
    if (hi - lo > UFFD_ZERO_MAX) {
        reg_drop(lo, hi);
        return;
    }
    uintptr_t over[REG_MAX][2];
    size_t n = 0;
    for (size_t k = 0; k < nidle; k++) {
        uintptr_t a = idle[k].lo > lo ? idle[k].lo : lo;
        uintptr_t b = idle[k].hi < hi ? idle[k].hi : hi;
        if (a < b)
            over[n][0] = a, over[n++][1] = b;
    }
    for (size_t k = 0; k < n; k++) {
        uffd_populate_zero(over[k][0], over[k][1]);
        reg_take(over[k][0], over[k][1]);
    }
}

/* Handler thread: a MISSING fault at page a outside every entry.  Returns 1
 * when a lay in an idle range, now unregistered (the kernel serves the
 * retried fault). */
int reg_fault(uintptr_t a)
{
    if (!reg_overlaps(a, a + ZIO_PAGE))
        return 0;
    for (size_t k = 0; k < nidle; k++) {
        if (idle[k].lo <= a && a < idle[k].hi) {
            uffd_unregister(idle[k].lo, idle[k].hi);   /* wakes the waiters */
            remove_at(k);
            hull_update();
            uffd_wake(a, ZIO_PAGE);
            return 1;
        }
    }
    return 0;
}
