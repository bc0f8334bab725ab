/*
 * Per-process operation logs.  An append streams the payload into the log
 * (checksumming it in the same pass) and persists it; only then does it
 * store the header with the commit marker, in one cache line, and persist
 * that.  A crash leaves either a whole entry or one that the scan rejects
 * (no marker, stale epoch, or bad checksum): a torn tail.
 * Resetting a slot bumps its epoch, which kills every older entry at once.
 */
#include "strata_internal.h"

#include <errno.h>
#include <libpmem.h>
#include <stdio.h>
#include <string.h>

#include "kb/env.h"

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)

static char *slot_log(int slot) { return G.logs + (uint64_t)slot * G.sb->log_bytes; }

const void *entry_payload(const struct strata_entry *e) { return (const char *)e + sizeof(*e); }
const char *entry_name(const struct strata_entry *e) { return entry_payload(e); }
const char *entry_name2(const struct strata_entry *e) { return entry_name(e) + e->name_len; }

static uint64_t payload_len(const struct strata_entry *e)
{
    switch (e->kind) {
    case STRATA_E_WRITE:
        return e->len;
    case STRATA_E_WRITE_REF:
        return sizeof(struct strata_ref);
    case STRATA_E_TRUNCATE:
    case STRATA_E_SETATTR:
        return 0;
    default:
        return (uint64_t)e->name_len + e->name2_len;
    }
}

/* Entry checksum: the header (commit and crc zeroed) hashed with the
 * payload checksum as seed. */
static uint32_t header_csum(const struct strata_entry *hdr, uint32_t payload_csum)
{
    struct strata_entry h = *hdr;
    h.commit = 0;
    h.crc = 0;
    return strata_csum(G.sb->fs_id ^ payload_csum, &h, sizeof(h));
}

static uint32_t entry_csum(const struct strata_entry *e, const void *payload, uint64_t plen)
{
    return header_csum(e, strata_data_csum(payload, plen, G.sb->fs_id));
}

int log_claim_slot(void)
{
    if (G.slot >= 0)
        return 0;
    if (strata_pool_lock() != 0)
        return -1;
    int found = -1;
    for (uint32_t i = 0; i < G.sb->nslots && found < 0; i++) {
        struct strata_slot *s = &G.slots[i];
        if (s->owner_pid == 0 || s->owner_pid == G.pid || !strata_owner_alive(s->owner_pid, s->owner_start)) {
            digest_slot((int)i); /* recover whatever a dead owner left */
            found = (int)i;
        }
    }
    if (found >= 0) {
        G.slots[found].owner_pid = G.pid;
        G.slots[found].owner_start = G.start;
        G.slots[found].credits = 0;
        strata_persist(&G.slots[found], sizeof(struct strata_slot));
        G.slot = found;
        G.tail = 0;
        bg_log_reset(); /* nothing of the new slot is applied yet */
        G.log_backed = 0;
        G.credits_left = 0;
    }
    strata_pool_unlock();
    if (found < 0) {
        static int said;
        if (!said++ && kb_getenv("STRATA_QUIET") == NULL)
            fprintf(stderr, "strata: all %u log slots are held by live processes (one per "
                    "writing process): make the pool with more (strata mkfs --slots)\n",
                    G.sb->nslots);
        errno = EMFILE; /* every log slot is owned by a live process */
        return -1;
    }
    return 0;
}

void log_release_slot(void)
{
    if (G.slot < 0 || G.tail != 0 || strata_pool_lock() != 0)
        return;
    struct strata_slot *s = &G.slots[G.slot];
    if (G.tail == 0 && s->owner_pid == G.pid) {
        s->owner_pid = 0;
        s->credits = 0;
        strata_persist(s, sizeof(*s));
        G.slot = -1;
        G.credits_left = 0;
    }
    strata_pool_unlock();
}

struct strata_entry *log_append(struct strata_entry *hdr, const void *payload, size_t plen)
{
    uint64_t total = ALIGN64(sizeof(*hdr) + plen);
    if (G.tail + total > G.sb->log_bytes) {
        errno = ENOSPC;
        return NULL;
    }
    char *at = slot_log(G.slot) + G.tail;
    if (G.tail + total > G.log_backed) { /* sparse pool: back the next stretch first */
        uint64_t upto = G.tail + total + (256u << 10);
        upto = upto > G.sb->log_bytes ? G.sb->log_bytes : upto;
        if (pool_back((uint64_t)(slot_log(G.slot) - G.base) + G.log_backed, upto - G.log_backed) != 0)
            return NULL; /* ENOSPC */
        G.log_backed = upto;
    }
    struct strata_entry *e = (struct strata_entry *)at;
    hdr->commit = 0;
    hdr->epoch = G.slots[G.slot].epoch;
    hdr->entry_len = (uint32_t)total;
    char *data = at + sizeof(*hdr);
    uint64_t whole = plen & ~(uint64_t)63;
    /* one pass copies the payload (streaming stores) and checksums it */
    hdr->crc = header_csum(hdr, strata_copy_csum(data, payload, plen, G.sb->fs_id, !G.use_msync));
    memset(data + plen, 0, total - sizeof(*hdr) - plen);
    /* 1. the payload is durable; 2. the header and its commit marker, which
     * share one cache line (persisted as a unit, in store order) */
    if (G.use_msync) {
        pmem_msync(data, total - sizeof(*hdr));
    } else {
        if (whole < plen)
            pmem_flush(data + whole, total - sizeof(*hdr) - whole);
        pmem_drain();
    }
    memcpy(at, hdr, sizeof(*hdr));
    e->commit = STRATA_COMMIT;
    strata_persist(at, sizeof(*hdr));
    /* the background digest reads the tail without G.mu: everything before
     * it is a whole, persisted entry */
    __atomic_store_n(&G.tail, G.tail + total, __ATOMIC_RELEASE);
    /* G.mu serialises appends: plain stores, no locked adds on the hot path */
    kb_stats_set(G.c.appends, *G.c.appends + 1);
    kb_stats_set(G.c.log_bytes, *G.c.log_bytes + total);
#ifdef STRATA_TEST_HOOKS
    testhook_after_append();
#endif
    return e;
}

static int ref_valid(const struct strata_entry *e, int verify)
{
    const struct strata_ref *r = entry_payload(e);
    struct strata_super *sb = G.sb;
    uint64_t lo = sb->off_ref + STRATA_REF_TABLE, room = sb->ref_bytes - STRATA_REF_TABLE;
    if (r->len != e->len || r->pool_off < lo || r->len > room || r->pool_off - lo > room - r->len)
        return 0;
    return !verify || strata_data_csum(G.base + r->pool_off, r->len, sb->fs_id) == r->crc;
}

/* verify 0 (the owner's own log, digested by the process that wrote it):
 * the entry's shape only.  It computed the checksums of the payloads and of
 * the extents they reference when it logged them, made each entry durable
 * before its commit marker, and published its tail only after; reading
 * every byte again would only find what it wrote (a third of a background
 * digest's time for 64 KiB appends).  Anyone else's log, or one a crash
 * left, is verified in full. */
static int entry_valid(const struct strata_entry *e, uint64_t off, uint32_t epoch, int verify)
{
    uint64_t room = G.sb->log_bytes - off;
    if (e->entry_len < sizeof(*e) || e->entry_len % 64 || e->entry_len > room ||
        e->kind < STRATA_E_CREATE || e->kind > STRATA_E_LINK || e->epoch != epoch)
        return 0;
    uint64_t plen = payload_len(e);
    if (plen > e->entry_len - sizeof(*e))
        return 0;
    if (verify && entry_csum(e, entry_payload(e), plen) != e->crc)
        return 0;
    return e->kind != STRATA_E_WRITE_REF || ref_valid(e, verify);
}

/* Transactions: entries flagged STRATA_E_MORE are held back until the entry
 * that closes their transaction (no flag) is found valid; a transaction the
 * log ends inside is torn as a whole. */
uint64_t log_scan_opt(int slot, entry_fn fn, void *arg, int *torn, int verify)
{
    return log_scan_range(slot, 0, G.sb->log_bytes, fn, arg, torn, verify);
}

/* [start, limit): start is the end of a closed transaction.  A limit below
 * the log's size is the owner's live tail (the background digest): what lies
 * past it is being written, and a transaction still open there is not torn. */
uint64_t log_scan_range(int slot, uint64_t start, uint64_t limit, entry_fn fn, void *arg, int *torn,
                        int verify)
{
    char *log = slot_log(slot);
    uint32_t epoch = G.slots[slot].epoch;
    uint64_t off = start, txn = UINT64_MAX; /* start of the open transaction */
    int live = limit < G.sb->log_bytes;
    *torn = 0;
    while (off + sizeof(struct strata_entry) <= limit) {
        struct strata_entry *e = (struct strata_entry *)(log + off);
        if (e->epoch != epoch && e->commit == STRATA_COMMIT)
            break; /* an entry of an older epoch: the clean end of the log */
        if (e->commit != STRATA_COMMIT || !entry_valid(e, off, epoch, verify)) {
            /* all-zero header = never written; anything else was torn */
            static const char zero[sizeof(struct strata_entry)];
            *torn = !live && memcmp(e, zero, sizeof(zero)) != 0 && e->epoch == epoch;
            break;
        }
        if (e->flags & STRATA_E_MORE) {
            if (txn == UINT64_MAX)
                txn = off;
            off += e->entry_len;
            continue;
        }
        uint64_t at = txn == UINT64_MAX ? off : txn;
        txn = UINT64_MAX;
        for (; at <= off; at += ((struct strata_entry *)(log + at))->entry_len)
            if (fn && fn((struct strata_entry *)(log + at), at, arg) != 0)
                return at;
        off += e->entry_len;
    }
    if (txn != UINT64_MAX) {
        *torn = !live; /* committed pieces of a transaction that never closed */
        return txn;
    }
    return off;
}

uint64_t log_scan(int slot, entry_fn fn, void *arg, int *torn)
{
    return log_scan_opt(slot, fn, arg, torn, 1);
}

void log_reset_slot(int slot)
{
    struct strata_slot *s = &G.slots[slot];
    s->epoch = s->epoch + 1 ? s->epoch + 1 : 1;
    s->ns_applied = 0;
    s->credits = 0;
    s->digest_request = 0;
    strata_persist(s, sizeof(*s));
    if (slot == G.slot) {
        G.tail = 0;
        G.credits_left = 0;
        pend_clear_all();
        refs_clear(); /* digested: no reference of ours is outstanding */
        bg_log_reset();
    }
}
