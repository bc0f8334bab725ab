/*
 * Pins: the originals an in-flight output call reads in place of
 * intermediates (zio_io.c explains why they are pinned); tracking waits for
 * an overlapping pin before it lets an original be overwritten.  Below both.
 */
#include "zio_internal.h"

#include <sched.h>

#define NPINS 64

struct pin {
    uintptr_t lo, hi;
    int active;
};

static struct pin pins[NPINS];
/* pins taken and not released: pins_wait runs for every original released
 * (libtas asks ~11 times per Redis SET) and is nearly always free.  Taken
 * under zio_lock, as pins_wait reads it, so 0 there means none at all. */
static int npinned;

/* zio_lock held: wait until no in-flight output reads [lo,hi) */
void pins_wait(uintptr_t lo, uintptr_t hi)
{
    if (__atomic_load_n(&npinned, __ATOMIC_ACQUIRE) == 0)
        return;
    for (int i = 0; i < NPINS; i++) {
        while (__atomic_load_n(&pins[i].active, __ATOMIC_ACQUIRE) &&
               pins[i].lo < hi && lo < pins[i].hi)
            sched_yield();
    }
}

/* zio_lock held; a pin slot, or -1 when all are busy */
int pins_take(uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < NPINS; i++) {
        if (!pins[i].active) {
            pins[i].lo = lo;
            pins[i].hi = hi;
            __atomic_fetch_add(&npinned, 1, __ATOMIC_ACQ_REL);
            __atomic_store_n(&pins[i].active, 1, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1;
}

void pins_release(int slot)
{
    __atomic_store_n(&pins[slot].active, 0, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&npinned, 1, __ATOMIC_ACQ_REL);
}
