/*
 * Reads see what other processes wrote.  A file's writer (its write lease
 * holder) appends to its own log and returns; the bytes reach the shared
 * area when it digests (at the threshold, on its last writable close, ...).
 * A process about to read a file, or its size, while another live process
 * holds the file's lease applies that process's committed log entries first:
 * under the pool lock, without resetting the owner's log (the owner applies
 * them again at its own digest, which is idempotent).  So a read, fstat or
 * lseek sees every write that returned before it started, as on Linux
 * (`tail -f` of a log another process appends to, a backup copying a file
 * its writer still holds open).  A dead holder's log is recovered.
 *
 * Where this process got to in each other log is remembered (the owner's
 * pid, start time and log epoch name the log), so a later read applies
 * only what was appended since.  The owner's space credits stay counted
 * until its own digest returns them: near a full pool that is conservative.
 */
#include "strata_internal.h"

#include <stdlib.h>

struct seen {
    int32_t pid;
    uint32_t epoch;
    uint64_t start;    /* owner's start time */
    uint64_t off;      /* applied up to here (an entry boundary) */
};

static struct seen *seen; /* one a slot */

int see_foreign_writes(uint32_t ino)
{
    int32_t holder = __atomic_load_n(&G.inodes[ino].lease_pid, __ATOMIC_RELAXED);
    if (holder == 0 || holder == G.pid)
        return 0;
    if (seen == NULL && (seen = calloc(G.sb->nslots, sizeof(*seen))) == NULL)
        return -1;
    if (strata_pool_lock() != 0)
        return -1;
    int rc = 0;
    for (uint32_t i = 0; i < G.sb->nslots; i++) {
        struct strata_slot *s = &G.slots[i];
        if (s->owner_pid != holder || (int)i == G.slot)
            continue;
        if (!strata_owner_alive(s->owner_pid, s->owner_start)) {
            digest_dead_slots(); /* recovery, as a mount would */
            break;
        }
        struct seen *h = &seen[i];
        int same = h->pid == holder && h->start == s->owner_start && h->epoch == s->epoch;
        uint64_t end;
        int64_t n = digest_foreign_prefix((int)i, same ? h->off : 0, &end);
        if (n < 0) {
            rc = -1; /* a log digest cannot apply: errno says why, fsck names it */
            break;
        }
        *h = (struct seen){.pid = holder, .epoch = s->epoch, .start = s->owner_start, .off = end};
        if (n > 0)
            kb_stats_add(G.c.foreign_digests, 1);
        break;
    }
    strata_pool_unlock();
    return rc;
}
