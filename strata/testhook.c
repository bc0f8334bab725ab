/*
 * Simulated power loss for tests: damage the last committed entry of every
 * slot whose owner is dead, as if its final cache lines never reached NVM.
 * Maps the pool without mounting it (mounting would recover the slot first).
 */
#include "strata_internal.h"

#include <errno.h>
#include <libpmem.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* $STRATA_TEST_KILL_AFTER_APPENDS=N: SIGKILL this process right after its
 * N-th committed log append, i.e. possibly inside a transaction (tests of
 * writev atomicity).  Unset: never. */
void testhook_after_append(void)
{
    static long left = -2;
    if (left == -2) {
        const char *s = getenv("STRATA_TEST_KILL_AFTER_APPENDS");
        left = s ? atol(s) : -1;
    }
    if (left > 0 && --left == 0)
        raise(SIGKILL);
}

static int remember(struct strata_entry *e, uint64_t off, void *arg)
{
    (void)off;
    *(struct strata_entry **)arg = e;
    return 0;
}

int strata_test_tear_tail(const char *pool_path, int mode)
{
    if (G.base != NULL) {
        errno = EBUSY; /* only from a process that has not mounted the pool */
        return -1;
    }
    char err[600];
    if (strata_map(pool_path, &G, 0, err, sizeof(err)) != 0)
        return -1;
    int torn_slots = 0;
    for (uint32_t i = 0; i < G.sb->nslots; i++) {
        struct strata_slot *s = &G.slots[i];
        if (s->owner_pid == 0 || strata_owner_alive(s->owner_pid, s->owner_start))
            continue;
        struct strata_entry *last = NULL;
        int torn;
        log_scan((int)i, remember, &last, &torn);
        if (last == NULL)
            continue;
        if (mode == 0)
            memset(last, 0, last->entry_len);
        else if (mode == 1)
            ((char *)last)[last->entry_len - 1] ^= 0x5a, ((char *)last)[sizeof(*last)] ^= 0x5a;
        else
            last->commit = 0;
        pmem_persist(last, last->entry_len);
        torn_slots++;
    }
    strata_unmap(&G);
    return torn_slots;
}
