/*
 * Digest (the KernFS part): apply a log slot to the shared area in one batch
 * and reclaim the log.  Runs under the pool lock in whichever process asks
 * (the owner when its log passes the fill threshold or it releases a lease;
 * anyone, for slots whose owner died: that is crash recovery).
 *
 * Coalescing: a write fully covered by later writes to the same inode in the
 * batch is skipped; truncates between them do not matter because the later
 * write redefines every byte of the range and the file end.
 * Replay is idempotent, so a crash in the middle of a digest is repaired by
 * digesting the same entries again.
 */
#include "strata_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct batch {
    struct strata_entry **e;
    uint8_t *skip;
    uint32_t n, cap;
    uint64_t ns_applied;
    int failed;
};

static int collect(struct strata_entry *e, uint64_t off, void *arg)
{
    struct batch *b = arg;
    if (is_namespace(e)) {
        /* only a crash can leave one unapplied (it is then the last entry) */
        if (off >= b->ns_applied && apply_namespace(e) != 0)
            b->failed = 1;
        return 0;
    }
    if (b->n == b->cap && grow_array(&b->e, &b->cap, sizeof(*b->e)) != 0)
        return -1;
    b->e[b->n++] = e;
    return 0;
}

static int by_inode(const void *a, const void *b, void *arg)
{
    struct strata_entry **e = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (e[x]->ino != e[y]->ino)
        return e[x]->ino < e[y]->ino ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Disjoint sorted intervals covered by later writes of one inode. */
struct cover {
    uint64_t (*iv)[2];
    uint32_t n, cap;
};

static int covered(const struct cover *c, uint64_t a, uint64_t b)
{
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) { /* first interval with end > a */
        uint32_t mid = (lo + hi) / 2;
        if (c->iv[mid][1] <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n && c->iv[lo][0] <= a && c->iv[lo][1] >= b;
}

static void cover_add(struct cover *c, uint64_t a, uint64_t b)
{
    uint32_t i = 0;
    while (i < c->n && c->iv[i][1] < a)
        i++;
    uint32_t j = i;
    while (j < c->n && c->iv[j][0] <= b) {
        a = c->iv[j][0] < a ? c->iv[j][0] : a;
        b = c->iv[j][1] > b ? c->iv[j][1] : b;
        j++;
    }
    if (i == j && c->n == c->cap && grow_array(&c->iv, &c->cap, sizeof(*c->iv)) != 0)
        return; /* only loses a coalescing opportunity */
    if (i == j)
        memmove(&c->iv[i + 1], &c->iv[i], (c->n - i) * sizeof(*c->iv)), c->n++;
    else if (j > i + 1)
        memmove(&c->iv[i + 1], &c->iv[j], (c->n - j) * sizeof(*c->iv)), c->n -= j - i - 1;
    c->iv[i][0] = a;
    c->iv[i][1] = b;
}

/* Mark writes that later writes of the same inode fully overwrite. */
static uint64_t coalesce(struct batch *b)
{
    uint32_t *idx = malloc(b->n * sizeof(*idx));
    if (idx == NULL)
        return 0;
    for (uint32_t i = 0; i < b->n; i++)
        idx[i] = i;
    qsort_r(idx, b->n, sizeof(*idx), by_inode, b->e);
    uint64_t skipped = 0;
    struct cover c = {0};
    for (uint32_t k = b->n; k-- > 0;) {
        struct strata_entry *e = b->e[idx[k]];
        if (k + 1 == b->n || b->e[idx[k + 1]]->ino != e->ino)
            c.n = 0; /* new inode group (walking backwards) */
        if (e->kind != STRATA_E_WRITE && e->kind != STRATA_E_WRITE_REF)
            continue;
        if (e->len > 0 && covered(&c, e->off, e->off + e->len)) {
            b->skip[idx[k]] = 1;
            skipped++;
        } else {
            cover_add(&c, e->off, e->off + e->len);
        }
    }
    free(c.iv);
    free(idx);
    return skipped;
}

/* Apply the slot's entries from start to its end (or, live, to limit: the
 * owner's tail, without resetting the log; *end_out is where it stopped). */
static int64_t digest_range(int slot, uint64_t start, uint64_t limit, uint64_t *end_out)
{
    struct strata_slot *s = &G.slots[slot];
    struct batch b = {.ns_applied = s->ns_applied};
    int torn, live = end_out != NULL;
    /* our own log: we checksummed its payloads and extents when we logged them */
    int own = slot == G.slot && s->owner_pid == G.pid;
    uint64_t end = log_scan_range(slot, start, limit, collect, &b, &torn, !own);
    if (torn)
        kb_stats_add(G.c.torn, 1);
    int64_t rc = b.n;
    if (end == 0 && !torn)
        goto out; /* empty log */
    if (live && end == start)
        goto out; /* nothing new */
    b.skip = calloc(b.n ? b.n : 1, 1);
    if (b.skip == NULL) {
        rc = -1;
        goto out;
    }
    kb_stats_add(G.c.coalesced, coalesce(&b));
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < b.n; i++) {
        if (b.skip[i])
            continue;
        if (apply_data(b.e[i]) != 0) { /* out of blocks or corrupted: keep the log, report */
            if (errno != EUCLEAN) {
                kb_stats_add(G.c.enospc, 1);
                errno = ENOSPC;
            }
            rc = -1;
            goto out;
        }
        bytes += b.e[i]->kind == STRATA_E_TRUNCATE ? 0 : b.e[i]->len;
    }
    kb_stats_add(G.c.digested_entries, b.n);
    kb_stats_add(G.c.digested_bytes, bytes);
    if (live) { /* the log stays: later digests start at end */
        *end_out = end;
        if (own)
            kb_stats_add(G.c.bg_passes, 1);
        goto out;
    }
    if (s->owner_pid != G.pid)
        kb_stats_add(G.c.recoveries, 1);
    log_reset_slot(slot);
    kb_stats_add(G.c.digests, 1);
out:
    free(b.skip);
    free(b.e);
    return rc;
}

/* The whole log, then reset it.  For the own live log, the part the
 * background digest applied already is skipped (replaying it would be
 * idempotent, just slower; recovery after a crash replays it all). */
int64_t digest_slot(int slot)
{
    int own = slot == G.slot && G.slots[slot].owner_pid == G.pid;
    return digest_range(slot, own ? bg_applied() : 0, G.sb->log_bytes, NULL);
}

/* Background digest of the own log up to its tail (pool lock held). */
int64_t digest_own_prefix(void)
{
    if (G.slot < 0)
        return 0;
    uint64_t start = bg_applied(), end = start;
    uint64_t limit = __atomic_load_n(&G.tail, __ATOMIC_ACQUIRE);
    if (limit <= start)
        return 0;
    int64_t r = digest_range(G.slot, start, limit, &end);
    if (r > 0)
        bg_set_applied(end);
    return r;
}

/* Apply another live process's committed entries from start (an entry
 * boundary of its log's current epoch) on, without resetting its log; *end
 * is where they stop.  Its owner applies them again at its own digest,
 * which is idempotent (foreign.c). */
int64_t digest_foreign_prefix(int slot, uint64_t start, uint64_t *end)
{
    *end = start;
    return digest_range(slot, start, G.sb->log_bytes, end);
}

static int owned_by_other_live(const struct strata_slot *s)
{
    return s->owner_pid != 0 && s->owner_pid != G.pid && strata_owner_alive(s->owner_pid, s->owner_start);
}

/* Entries applied; a log that cannot be applied (corrupt, or out of
 * blocks) is kept for a later try, and *err (if given) gets the first
 * such log's errno. */
int64_t digest_dead_slots_err(int *err)
{
    int64_t entries = 0;
    for (uint32_t i = 0; i < G.sb->nslots; i++) {
        struct strata_slot *s = &G.slots[i];
        if ((int)i == G.slot || owned_by_other_live(s))
            continue;
        int64_t r = digest_slot((int)i);
        if (r < 0) {
            if (err && *err == 0)
                *err = errno;
            continue;
        }
        entries += r;
        if (s->owner_pid != 0) {
            s->owner_pid = 0;
            strata_persist(&s->owner_pid, sizeof(s->owner_pid));
        }
    }
    return entries;
}

int64_t digest_dead_slots(void)
{
    return digest_dead_slots_err(NULL);
}

int digest_own(void)
{
    if (G.slot < 0)
        return 0;
    if (strata_pool_lock() != 0)
        return -1;
    int64_t r = digest_slot(G.slot);
    strata_pool_unlock();
    return r < 0 ? -1 : 0;
}

int64_t strata_digest(void)
{
    pthread_mutex_lock(&G.mu);
    int64_t total = -1;
    if (strata_ensure_attached() != 0 || strata_pool_lock() != 0)
        goto out;
    int64_t own = G.slot >= 0 ? digest_slot(G.slot) : 0;
    int err = own < 0 ? errno : 0;
    int64_t dead = digest_dead_slots_err(&err);
    for (uint32_t i = 0; i < G.sb->nslots; i++)
        if ((int)i != G.slot && owned_by_other_live(&G.slots[i]))
            G.slots[i].digest_request = 1; /* the owner digests at its next write */
    strata_pool_unlock();
    /* a log left undigested is reported, never passed over in silence */
    total = err ? (errno = err, -1) : (own > 0 ? own : 0) + dead;
out:
    pthread_mutex_unlock(&G.mu);
    return total;
}

int64_t strata_digest_self(void)
{
    pthread_mutex_lock(&G.mu);
    int64_t r = 0; /* not attached, or nothing logged yet: nothing to digest */
    if (G.base != NULL && G.slot >= 0) {
        r = -1;
        if (strata_pool_lock() == 0) {
            r = digest_slot(G.slot);
            strata_pool_unlock();
        }
    }
    pthread_mutex_unlock(&G.mu);
    return r;
}
