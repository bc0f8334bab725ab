/*
 * Space: what the pool costs in its backing file, and what is left.
 *
 * A pool file is sparse: mkfs backs only the metadata, a log is backed as it
 * grows, a data block when digest allocates it, and a freed block's page is
 * given back (hole punched).  So the pool costs what is written, and a pool
 * may be larger than its file system has room for.  Running out of that room
 * must be an ENOSPC, never a SIGBUS on a store into a hole: every page is
 * backed (fallocate) before it is first stored to, and the space a write
 * reserves is checked against both the pool's free blocks and the backing
 * file system's (strata_free_blocks).  A DAX device is not sparse: none of
 * this applies there.
 */
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#define BACK_CHUNK 512 /* data blocks backed (and mapped) at once: 2 MiB per call */

/* Blocks this process backed and mapped, valid until any process punches a
 * hole (the superblock's punch_gen moves). */
static uint64_t backed_lo, backed_hi, backed_gen;
static uint64_t punch_lo, punch_n;    /* freed blocks whose pages are not yet returned */

/* Map pages about to be stored to in one call instead of one fault per page
 * (a digest or a log append would otherwise fault on every fresh 4 KiB).
 * Best effort: before Linux 5.14 (EINVAL) stores fault the pages in. */
static void pool_populate(uint64_t off, uint64_t len)
{
    static int unsupported;
    if (unsupported || len == 0)
        return;
    uint64_t lo = off & ~(uint64_t)4095, hi = (off + len + 4095) & ~(uint64_t)4095;
    if (madvise(G.base + lo, hi - lo, MADV_POPULATE_WRITE) == 0)
        kb_stats_add(G.c.pages_populated, (hi - lo) / 4096);
    else if (errno == EINVAL)
        unsupported = 1;
}

int pool_back(uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    if (!G.sparse || fallocate(G.lock_fd, 0, (off_t)off, (off_t)len) == 0 || errno == EOPNOTSUPP) {
        /* without fallocate, pages come on first store */
        pool_populate(off, len);
        return 0;
    }
    if (errno != ENOSPC)
        fprintf(stderr, "strata: cannot back pool pages (%s)\n", strerror(errno));
    kb_stats_add(G.c.backing_enospc, 1);
    errno = ENOSPC;
    return -1;
}

/* Back (sparse pool) and map (any pool) the stretch of data blocks from b
 * on: a digest storing into a fully backed pool would otherwise still take
 * one page fault per 4 KiB block of this process's mapping. */
int pool_back_block(uint32_t b)
{
    if (b >= backed_lo && b < backed_hi)
        return 0;
    uint64_t n = G.sb->nblocks - b < BACK_CHUNK ? G.sb->nblocks - b : BACK_CHUNK;
    if (pool_back((uint64_t)b * STRATA_BLOCK, n * STRATA_BLOCK) != 0) {
        n = 1; /* nearly full: just this one */
        if (pool_back((uint64_t)b * STRATA_BLOCK, STRATA_BLOCK) != 0)
            return -1;
    }
    backed_lo = b;
    backed_hi = b + n;
    return 0;
}

void pool_punch_flush(void)
{
    if (punch_n == 0)
        return;
    if (G.sparse && fallocate(G.lock_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              (off_t)(punch_lo * STRATA_BLOCK), (off_t)(punch_n * STRATA_BLOCK)) == 0)
        kb_stats_add(G.c.blocks_punched, punch_n);
    G.sb->punch_gen++;   /* every process's backed window may name a hole now */
    if (punch_lo < backed_hi && punch_lo + punch_n > backed_lo)
        backed_hi = 0;
    punch_n = 0;
}

/* A block was freed (bitmap cleared): return its page, coalescing runs.
 * Flushed before any allocation and when the pool lock is released. */
void pool_punch_block(uint32_t b)
{
    if (!G.sparse)
        return;
    if (punch_n && b == punch_lo + punch_n) {
        punch_n++;
        return;
    }
    pool_punch_flush();
    punch_lo = b;
    punch_n = 1;
}

/* A new lock hold: another process may have punched pages meanwhile. */
void pool_space_lock(void)
{
    if (G.sb->punch_gen != backed_gen) {
        backed_gen = G.sb->punch_gen;
        backed_hi = 0;
    }
}

uint64_t backing_free_blocks(void)
{
    struct statfs s;
    if (!G.sparse || fstatfs(G.lock_fd, &s) != 0)
        return UINT64_MAX;
    return (uint64_t)s.f_bavail * (uint64_t)s.f_bsize / STRATA_BLOCK;
}

/* Data blocks a write may still be given: the pool's free blocks, capped by
 * what the backing file system can still hold. */
uint64_t strata_free_blocks(void)
{
    uint64_t b = backing_free_blocks();
    return G.sb->free_blocks < b ? G.sb->free_blocks : b;
}

uint64_t credits_held(void)
{
    uint64_t held = 0;
    for (uint32_t i = 0; i < G.sb->nslots; i++)
        held += G.slots[i].owner_pid ? G.slots[i].credits : 0;
    return held;
}

/* statfs numbers in 4 KiB blocks: data capacity, free, free for writers
 * (reservations and the backing file system's room taken off), inodes. */
int strata_space(uint64_t *blocks, uint64_t *bfree, uint64_t *bavail, uint64_t *files, uint64_t *ffree)
{
    if (strata_ensure_attached() != 0)
        return -1;
    pthread_mutex_lock(&G.mu);
    struct strata_super *sb = G.sb;
    uint64_t held = credits_held(), used = 0;
    for (uint32_t i = 1; i < sb->ninodes; i++)
        used += G.inodes[i].mode != 0;
    uint64_t f = strata_free_blocks();
    *blocks = sb->nblocks - sb->off_data / STRATA_BLOCK;
    *bfree = sb->free_blocks;
    *bavail = f > held ? f - held : 0;
    *files = sb->ninodes - 1;
    *ffree = *files - used;
    pthread_mutex_unlock(&G.mu);
    return 0;
}

static uint64_t slot_log_used(uint32_t i)
{
    int torn;
    return log_scan((int)i, NULL, NULL, &torn);
}

int strata_df(char *buf, size_t len)
{
    if (strata_ensure_attached() != 0)
        return -1;
    pthread_mutex_lock(&G.mu);
    struct strata_super *sb = G.sb;
    uint64_t data = sb->nblocks - sb->off_data / STRATA_BLOCK, held = 0, log_used = 0;
    uint32_t live = 0;
    for (uint32_t i = 0; i < sb->nslots; i++) {
        if (G.slots[i].owner_pid)
            held += G.slots[i].credits, live++;
        log_used += slot_log_used(i);
    }
    struct stat st;
    uint64_t file_bytes = fstat(G.lock_fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
    uint64_t bfree = backing_free_blocks();
    int n = snprintf(buf, len,
                     "pool_bytes %lu\ndata_capacity_bytes %lu\ndata_used_bytes %lu\ndata_free_bytes %lu\n"
                     "reserved_bytes %lu\nbacking_free_bytes %ld\nwritable_bytes %lu\npool_file_bytes %lu\n"
                     "log_slots %u\nlog_slots_live %u\nlog_bytes_per_slot %lu\nlog_used_bytes %lu\n",
                     (unsigned long)sb->pool_size, (unsigned long)(data * STRATA_BLOCK),
                     (unsigned long)((data - sb->free_blocks) * STRATA_BLOCK),
                     (unsigned long)(sb->free_blocks * STRATA_BLOCK), (unsigned long)(held * STRATA_BLOCK),
                     bfree == UINT64_MAX ? -1L : (long)(bfree * STRATA_BLOCK),
                     (unsigned long)((strata_free_blocks() > held ? strata_free_blocks() - held : 0) * STRATA_BLOCK),
                     (unsigned long)file_bytes, sb->nslots, live, (unsigned long)sb->log_bytes,
                     (unsigned long)log_used);
    pthread_mutex_unlock(&G.mu);
    return n;
}
