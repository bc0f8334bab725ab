/*
 * Mount: attach and detach a process to a pool, and the recovery that runs
 * when it attaches or takes the pool lock after a crash.
 *
 * The layering goes one way: pool.c (layout, map, persist, the lock
 * primitive) is the bottom; this unit sits above digest, the shared area,
 * the directory and LibFS's leases and orphans, and hands pool.c the hooks
 * its lock runs (recover_hook) so the lock never calls up.
 *
 * Recovery at attach replays the logs of processes that died; recovery at
 * lock time (the previous holder died mid-mutation: sb->dirty_pid) also
 * rebuilds allocator state (repair).
 */
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kb/env.h"

#define DEFAULT_POOL "/dev/shm/strata.pool"

/* Rebuild allocator state after an interrupted mutation: drop dirents that
 * point at free inodes, free unreachable inodes, recount the bitmap. */
static void repair(void)
{
    struct strata_super *sb = G.sb;
    uint8_t *reach = calloc(sb->ninodes, 1);
    if (reach == NULL)
        return;
    reach[STRATA_ROOT_INO] = 1;
    for (uint32_t i = 0; i < sb->ndirents; i++) {
        struct strata_dirent *d = &G.dirents[i];
        if (d->state != 1)
            continue;
        if (d->ino == 0 || d->ino >= sb->ninodes || G.inodes[d->ino].mode == 0)
            dir_remove(d);
        else if (reach[d->ino] < 255)
            reach[d->ino]++;
    }
    for (uint32_t i = 2; i < sb->ninodes; i++) {
        struct strata_inode *in = &G.inodes[i];
        if (in->mode != 0 && !reach[i] && in->parent != STRATA_ORPHAN) {
            ino_free(i);
        } else if (S_ISREG(in->mode)) {
            shared_trim(i); /* a write cut short by the crash may have run past EOF */
            if (reach[i] && in->nlink != reach[i] && !(in->nlink == 0 && reach[i] == 1)) {
                in->nlink = reach[i]; /* an interrupted link/unlink: count the names */
                strata_persist(&in->nlink, sizeof(in->nlink));
            }
        }
    }
    orphan_sweep();
    free(reach);
    sb->free_blocks = bitmap_rebuild();
    strata_persist(&sb->free_blocks, sizeof(sb->free_blocks));
    kb_stats_add(G.c.repairs, 1);
}


/* The lock's hooks: a new hold may find backed pages punched by another
 * process meanwhile; a hold taken from a dead holder recovers first. */
static void lock_acquired(int holder_died)
{
    pool_space_lock();
    if (holder_died) {
        digest_dead_slots();
        repair();
    }
}

static const struct strata_lock_hooks lock_hooks = {
    .acquired = lock_acquired,
    .releasing = pool_punch_flush,
};

static void counters_init(void)
{
    char inst[32];
    snprintf(inst, sizeof(inst), "%d", (int)G.pid);
    G.stats = kb_stats_create("strata", inst);
    struct kb_stats_page *p = G.stats;
    G.c.appends = kb_stats_counter(p, "log_appends");
    G.c.log_bytes = kb_stats_counter(p, "log_bytes");
    G.c.fsyncs = kb_stats_counter(p, "fsyncs");
    G.c.digests = kb_stats_counter(p, "digests");
    G.c.digested_entries = kb_stats_counter(p, "digested_entries");
    G.c.digested_bytes = kb_stats_counter(p, "digested_bytes");
    G.c.coalesced = kb_stats_counter(p, "coalesced_overwrites");
    G.c.recoveries = kb_stats_counter(p, "recoveries");
    G.c.torn = kb_stats_counter(p, "torn_entries_discarded");
    G.c.enospc = kb_stats_counter(p, "enospc");
    G.c.lease_waits = kb_stats_counter(p, "lease_waits");
    G.c.published = kb_stats_counter(p, "writes_published");
    G.c.foreign_digests = kb_stats_counter(p, "foreign_log_digests");
    G.c.ref_writes = kb_stats_counter(p, "ref_writes");
    G.c.repairs = kb_stats_counter(p, "repairs");
    G.c.ref_bytes = kb_stats_counter(p, "ref_bytes");
    G.c.inline_bytes = kb_stats_counter(p, "inline_bytes");
    G.c.inline_large_bytes = kb_stats_counter(p, "inline_large_bytes");
    G.c.ref_fallbacks = kb_stats_counter(p, "ref_fallbacks");
    G.c.ref_fallback_small = kb_stats_counter(p, "ref_fallback_small");
    G.c.ref_fallback_nomem = kb_stats_counter(p, "ref_fallback_nomem");
    G.c.ref_digests = kb_stats_counter(p, "ref_digests");
    G.c.ofd_shared = kb_stats_counter(p, "ofd_shared");
    G.c.ofd_adopted = kb_stats_counter(p, "ofd_adopted");
    G.c.blocks_punched = kb_stats_counter(p, "blocks_punched");
    G.c.pages_populated = kb_stats_counter(p, "pages_populated");
    G.c.backing_enospc = kb_stats_counter(p, "backing_enospc");
    G.c.bg_passes = kb_stats_counter(p, "bg_digest_passes");
    G.c.bg_kicks = kb_stats_counter(p, "bg_digest_kicks");
    G.c.bg_threads = kb_stats_counter(p, "bg_digest_threads");
    G.c.log_full = kb_stats_counter(p, "log_full_digests");
    G.c.maps = kb_stats_counter(p, "maps");
    G.c.writebacks = kb_stats_counter(p, "writebacks");
    G.c.writeback_bytes = kb_stats_counter(p, "writeback_bytes");
    G.c.shadow_files = kb_stats_counter(p, "shadow_files");
    G.c.locks = kb_stats_counter(p, "locks");
    G.c.lock_files = kb_stats_counter(p, "lock_files");
}

int strata_attach(const char *path)
{
    pthread_mutex_lock(&G.mu);
    if (G.base != NULL) {
        pthread_mutex_unlock(&G.mu);
        return 0;
    }
    if (path == NULL)
        path = kb_getenv("STRATA_POOL");
    if (path == NULL)
        path = DEFAULT_POOL;
    char err[600];
    int rc = -1;
    if (strata_map(path, &G, 1, err, sizeof(err)) != 0) {
        int e = errno;
        if (kb_getenv("STRATA_QUIET") == NULL)
            fprintf(stderr, "strata: %s\n", err);
        errno = e;
        goto out;
    }
    strata_pool_lock_hooks(&lock_hooks);
    G.pid = getpid();
    G.start = strata_proc_start(G.pid);
    G.lock_fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (G.lock_fd >= 0 && fstat(G.lock_fd, &st) == 0) { /* strata_nvm_map checks fds against it */
        G.pool_dev = st.st_dev;
        G.pool_ino = st.st_ino;
    }
    G.pend = calloc(G.sb->ninodes, sizeof(*G.pend));
    G.wlease = calloc(G.sb->ninodes, sizeof(*G.wlease));
    G.opens = calloc(G.sb->ninodes, sizeof(*G.opens));
    if (G.lock_fd < 0 || !G.pend || !G.wlease || !G.opens)
        goto out;
    counters_init();
    strata_shared_writers_init();
    /* Mount-time recovery: replay the logs of processes that died. */
    if (strata_pool_lock() != 0)
        goto out;
    digest_dead_slots();
    ofd_adopt();           /* fds inherited over exec (before the sweep: orphans) */
    lease_release_stale();
    orphan_sweep();
    G.sb->mounts++;
    strata_pool_unlock();
    rc = 0;
out:
    pthread_mutex_unlock(&G.mu);
    return rc;
}

void strata_detach(void)
{
    bg_stop(); /* before G.mu: the thread may be waiting for it */
    pthread_mutex_lock(&G.mu);
    if (G.base && G.pid == getpid()) {
        if (G.slot >= 0) {
            digest_own();
            if (strata_pool_lock() == 0) {
                G.slots[G.slot].owner_pid = 0;
                G.slots[G.slot].credits = 0;
                strata_persist(&G.slots[G.slot], sizeof(struct strata_slot));
                strata_pool_unlock();
            }
        }
        char inst[32];
        snprintf(inst, sizeof(inst), "%d", (int)G.pid);
        kb_stats_close(G.stats, "strata", inst, 1);
        G.stats = NULL;
        /* Forget the lock fd first: close() goes through our own shim, which
         * refuses to close the mounted pool's lock fd (it leaked per attach). */
        int lock_fd = G.lock_fd;
        G.lock_fd = -1;
        close(lock_fd);
        strata_unmap(&G);
        G.slot = -1;
        G.tail = 0;
        G.credits_left = 0;
    }
    pthread_mutex_unlock(&G.mu);
}

int strata_ensure_attached(void)
{
    if (G.base != NULL) /* after fork, the atfork handler has updated G */
        return 0;
    return strata_attach(NULL);
}

int strata_ref_area(void **addr, uint64_t *pool_off, uint64_t *len)
{
    if (strata_ensure_attached() != 0)
        return -1;
    *addr = G.base + G.sb->off_ref;
    *pool_off = G.sb->off_ref;
    *len = G.sb->ref_bytes;
    return 0;
}


int strata_info(char *buf, size_t len)
{
    if (strata_ensure_attached() != 0)
        return -1;
    struct strata_super *sb = G.sb;
    uint32_t used_inodes = 0, live_slots = 0;
    for (uint32_t i = 1; i < sb->ninodes; i++)
        used_inodes += G.inodes[i].mode != 0;
    for (uint32_t i = 0; i < sb->nslots; i++)
        live_slots += G.slots[i].owner_pid != 0;
    return snprintf(buf, len,
                    "path %s\nis_pmem %d\npersist %s\nversion %u\npool_size %lu\nblock_size %u\n"
                    "nslots %u\nlive_slots %u\nlog_bytes %lu\ninodes %u\ninodes_used %u\n"
                    "data_blocks %lu\nfree_blocks %lu\nref_off %lu\nref_bytes %lu\nref_table %u\n"
                    "mounts %lu\n",
                    G.path, G.is_pmem, G.use_msync ? "pmem_msync" : "pmem_persist", sb->version,
                    (unsigned long)sb->pool_size, sb->block_size, sb->nslots, live_slots,
                    (unsigned long)sb->log_bytes, sb->ninodes, used_inodes,
                    (unsigned long)(sb->nblocks - sb->off_data / STRATA_BLOCK),
                    (unsigned long)sb->free_blocks, (unsigned long)sb->off_ref,
                    (unsigned long)sb->ref_bytes, STRATA_REF_TABLE, (unsigned long)sb->mounts);
}
