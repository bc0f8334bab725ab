/*
 * The NVM pool: layout, mkfs, attach (superblock checks), persistence and the
 * pool-wide lock.
 *
 * Persistence: pmem_persist (flush + fence) is the persistence point on every
 * path.  On a real pmem/DAX mapping that is what makes data durable.  On a
 * non-pmem mapping of a disk file libpmem requires pmem_msync instead, so we
 * use it there; on tmpfs (/dev/shm, the emulation) msync cannot add any
 * durability, so we keep pmem_persist, which models the DAX cost.
 *
 * Lock: flock on a private fd of the pool file.  The kernel drops it when a
 * process dies, and sb->dirty_pid (set while the shared area is mutated)
 * tells the next holder that a crash interrupted a mutation.  What the holder
 * then does (replay the dead processes' logs, repair allocator state) is the
 * mount unit's business (mount.c), reached through the hooks it installs at
 * attach: this file is the bottom layer and calls nothing above it.
 */
#include "strata_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpmem.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

struct strata_fs G = {.slot = -1, .lock_fd = -1, .mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP};

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

void strata_persist(const void *addr, size_t len)
{
    if (G.use_msync)
        pmem_msync(addr, len);
    else
        pmem_persist(addr, len);
}

void strata_flush(const void *addr, size_t len)
{
    if (G.use_msync)
        pmem_msync(addr, len);
    else
        pmem_flush(addr, len);
}

/* Digest writes whole blocks it will not read again: streaming stores skip
 * reading the destination lines in and writing them back again at the
 * flush (memcpy + pmem_persist did both). */
void strata_fill_nodrain(void *dst, const void *src, size_t len)
{
    if (G.use_msync) {
        if (src)
            memcpy(dst, src, len);
        else
            memset(dst, 0, len);
        pmem_msync(dst, len);
    } else if (src) {
        pmem_memcpy_nodrain(dst, src, len);
    } else {
        pmem_memset_nodrain(dst, 0, len);
    }
}

uint32_t strata_persist_csum_nodrain(const void *addr, size_t len, uint64_t seed)
{
    if (G.use_msync) {
        pmem_msync(addr, len);
        return strata_data_csum(addr, len, seed);
    }
    return strata_csum_flush(addr, len, seed, pmem_flush);
}

void strata_drain(void)
{
    if (!G.use_msync)
        pmem_drain();
}

/* Start time (clock ticks since boot, field 22 of /proc/pid/stat); 0 when
 * the process does not exist or is a zombie (dead, not yet reaped). */
uint64_t strata_proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (p == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0;
    p += 2; /* field 3 (state) */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

int strata_owner_alive(pid_t pid, uint64_t start)
{
    if (pid <= 0)
        return 0;
    uint64_t s = strata_proc_start(pid);
    return s != 0 && (start == 0 || s == start);
}

int strata_pid_alive(pid_t pid)
{
    return strata_owner_alive(pid, 0);
}

/* Fill the layout fields of sb from its parameters; -1 if it does not fit. */
int pool_layout(struct strata_super *sb)
{
    sb->off_slots = STRATA_BLOCK;
    sb->off_logs = ALIGN_UP(sb->off_slots + (uint64_t)sb->nslots * sizeof(struct strata_slot), STRATA_BLOCK);
    sb->off_inodes = sb->off_logs + (uint64_t)sb->nslots * sb->log_bytes;
    sb->ndirents = sb->ninodes * 2;
    sb->off_dirents = ALIGN_UP(sb->off_inodes + (uint64_t)sb->ninodes * sizeof(struct strata_inode), STRATA_BLOCK);
    sb->off_bitmap = ALIGN_UP(sb->off_dirents + (uint64_t)sb->ndirents * sizeof(struct strata_dirent), STRATA_BLOCK);
    sb->nblocks = sb->pool_size / STRATA_BLOCK;
    sb->off_ref = ALIGN_UP(sb->off_bitmap + ALIGN_UP(sb->nblocks, 8) / 8, STRATA_BLOCK);
    if (sb->ref_bytes == 0) /* default: an eighth of the pool (sparse until used) */
        sb->ref_bytes = ALIGN_UP(sb->pool_size / 8, STRATA_BLOCK);
    sb->off_data = sb->off_ref + sb->ref_bytes;
    if (sb->ref_bytes % STRATA_BLOCK || sb->ref_bytes < STRATA_REF_TABLE + STRATA_BLOCK ||
        sb->ref_bytes > sb->pool_size ||
        sb->log_bytes % STRATA_BLOCK || sb->log_bytes < 64 * 1024 || sb->nslots == 0 ||
        sb->nslots > 256 || sb->ninodes < 16 || sb->pool_size % STRATA_BLOCK ||
        sb->off_data + 16 * STRATA_BLOCK > sb->pool_size || sb->nblocks > UINT32_MAX)
        return -1;
    return 0;
}

static uint32_t super_crc(const struct strata_super *sb)
{
    return strata_csum(0x5354524154415342ULL, sb, offsetof(struct strata_super, crc));
}

static void set_views(struct strata_fs *fs)
{
    struct strata_super *sb = fs->sb = (struct strata_super *)fs->base;
    fs->slots = (struct strata_slot *)(fs->base + sb->off_slots);
    fs->logs = fs->base + sb->off_logs;
    fs->inodes = (struct strata_inode *)(fs->base + sb->off_inodes);
    fs->dirents = (struct strata_dirent *)(fs->base + sb->off_dirents);
    fs->bitmap = (uint8_t *)(fs->base + sb->off_bitmap);
}

static int on_tmpfs(const char *path)
{
    struct statfs s;
    return statfs(path, &s) == 0 && s.f_type == TMPFS_MAGIC;
}

/* Default pool size: the file system that will hold it (the pool is sparse,
 * so size costs nothing until written), at most 64 GiB; 256 MiB if unknown. */
uint64_t pool_default_size(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        slash == dir ? (void)(dir[1] = 0) : (void)(*slash = 0);
    struct statfs s;
    if (statfs(dir, &s) != 0 || s.f_blocks == 0)
        return 256u << 20;
    uint64_t fs = (uint64_t)s.f_blocks * (uint64_t)s.f_bsize, cap = 64ull << 30;
    return (fs < cap ? fs : cap) / (1u << 20) * (1u << 20);
}

int strata_mkfs(const char *path, uint64_t size, uint32_t nslots, uint64_t log_bytes, uint32_t ninodes)
{
    return strata_mkfs_ref(path, size, nslots, log_bytes, ninodes, 0);
}

int strata_mkfs_ref(const char *path, uint64_t size, uint32_t nslots, uint64_t log_bytes, uint32_t ninodes,
                    uint64_t ref_bytes)
{
    struct strata_super tmp = {.pool_size = size, .nslots = nslots ? nslots : 16,
                               .log_bytes = log_bytes ? log_bytes : (8u << 20),
                               .ninodes = ninodes ? ninodes : 4096, .ref_bytes = ref_bytes};
    if (tmp.pool_size == 0)
        tmp.pool_size = pool_default_size(path);
    if (pool_layout(&tmp) != 0) {
        errno = EINVAL;
        return -1;
    }
    struct stat st;
    size_t len;
    int is_pmem;
    char *base;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* DAX device: map what is there and clear the metadata regions. */
        base = pmem_map_file(path, 0, 0, 0, &len, &is_pmem);
        if (base == NULL)
            return -1;
        if (len < tmp.pool_size) {
            pmem_unmap(base, len);
            errno = ENOSPC;
            return -1;
        }
        /* metadata, and the ownership table: a new pool has no owners */
        pmem_memset_persist(base, 0, tmp.off_ref + STRATA_REF_TABLE);
    } else {
        unlink(path); /* a fresh sparse file: every region starts zeroed */
        base = pmem_map_file(path, tmp.pool_size, PMEM_FILE_CREATE | PMEM_FILE_EXCL | PMEM_FILE_SPARSE, 0600,
                             &len, &is_pmem);
        if (base == NULL)
            return -1;
        /* back the metadata and the ref area's table page (the TAS daemon
         * stores there) now; logs and data are backed as they are written,
         * see space.c: a full file system is an ENOSPC here */
        int fd = open(path, O_RDWR | O_CLOEXEC);
        int bad = fd < 0 || (fallocate(fd, 0, 0, (off_t)tmp.off_logs) != 0 && errno != EOPNOTSUPP) ||
                  (fallocate(fd, 0, (off_t)tmp.off_inodes, (off_t)(tmp.off_ref + STRATA_REF_TABLE - tmp.off_inodes)) != 0 &&
                   errno != EOPNOTSUPP);
        /* the first page of each log: mount reads it (a read fault on a
         * hole of a full tmpfs is a SIGBUS too) */
        for (uint32_t i = 0; i < tmp.nslots && !bad; i++)
            bad = fallocate(fd, 0, (off_t)(tmp.off_logs + i * tmp.log_bytes), STRATA_BLOCK) != 0 &&
                  errno != EOPNOTSUPP;
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (bad) {
            pmem_unmap(base, len);
            unlink(path);
            errno = e;
            return -1;
        }
    }
    struct strata_fs fs = {.base = base, .map_len = len, .is_pmem = is_pmem};
    struct strata_super *sb = (struct strata_super *)base;
    memcpy(sb, &tmp, sizeof(tmp));
    sb->magic = STRATA_MAGIC;
    sb->version = STRATA_VERSION;
    sb->block_size = STRATA_BLOCK;
    sb->digest_pct = 30;
    if (getrandom(&sb->fs_id, sizeof(sb->fs_id), 0) != sizeof(sb->fs_id))
        sb->fs_id = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL);
    set_views(&fs);
    for (uint32_t i = 0; i < sb->nslots; i++)
        fs.slots[i].epoch = 1;
    struct strata_inode *root = &fs.inodes[STRATA_ROOT_INO];
    root->mode = S_IFDIR | 0755;
    root->gen = 1;
    root->parent = STRATA_ROOT_INO;
    root->mtime_s = root->ctime_s = time(NULL);
    root->uid = (uint32_t)geteuid();
    root->gid = (uint32_t)getegid();
    uint64_t meta = sb->off_data / STRATA_BLOCK;
    for (uint64_t b = 0; b < meta; b++)
        fs.bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
    sb->free_blocks = sb->nblocks - meta;
    sb->crc = super_crc(sb);
    /* persist what was stored; flushing the untouched logs of a sparse
     * file would fault every page of them in */
    pmem_persist(base, sb->off_logs);
    pmem_persist(root, sizeof(*root));
    pmem_persist(fs.bitmap, (meta + 7) / 8);
    pmem_unmap(base, len);
    return 0;
}

/* Map a pool and validate its superblock; never trusts a field before the
 * checksum and the recomputed layout agree. */
int strata_map(const char *path, struct strata_fs *fs, int verbose, char *err, size_t errlen)
{
    size_t len;
    int is_pmem;
    char *base = pmem_map_file(path, 0, 0, 0, &len, &is_pmem);
    if (base == NULL) {
        if (verbose)
            snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return -1;
    }
    const char *why = NULL;
    char vwhy[160];
    struct strata_super *sb = (struct strata_super *)base;
    struct strata_super chk;
    if (len < STRATA_BLOCK)
        why = "pool smaller than a superblock";
    else if (sb->magic != STRATA_MAGIC)
        why = "bad superblock magic (not a Strata pool, or corrupted)";
    else if (sb->version != STRATA_VERSION) {
        snprintf(vwhy, sizeof(vwhy),
                 "unsupported pool version %u (this Strata reads version %u only; make the pool "
                 "again with `strata mkfs`)", sb->version, STRATA_VERSION);
        why = vwhy;
    }
    else if (sb->crc != super_crc(sb))
        why = "superblock checksum mismatch (corrupted)";
    else {
        chk = (struct strata_super){.pool_size = sb->pool_size, .nslots = sb->nslots,
                                    .log_bytes = sb->log_bytes, .ninodes = sb->ninodes,
                                    .ref_bytes = sb->ref_bytes};
        if (sb->ref_bytes == 0 || pool_layout(&chk) != 0 || chk.pool_size != len || chk.off_data != sb->off_data ||
            chk.off_bitmap != sb->off_bitmap || chk.nblocks != sb->nblocks || sb->block_size != STRATA_BLOCK)
            why = "superblock layout fields inconsistent with pool size";
    }
    if (why) {
        if (verbose)
            snprintf(err, errlen, "%s: %s", path, why);
        pmem_unmap(base, len);
        errno = EUCLEAN;
        return -1;
    }
    fs->base = base;
    fs->map_len = len;
    fs->is_pmem = is_pmem;
    fs->use_msync = !is_pmem && !on_tmpfs(path);
    struct stat st;
    /* a file with every page backed (mkfs --prealloc) stands for an NVM
     * device as a DAX device does: its pages are never punched, so no write
     * pays the kernel's zeroing of a fresh page again */
    fs->sparse = stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
                 (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
    /* A DAX device maps NVM in 2 MiB pages; a fully backed pool on tmpfs
     * does too where the mount allows it (huge=advise, as deploy/setup
     * mounts /dev/shm): with 4 KiB pages, mapping each page in at its first
     * touch was a third of a digest's time.  A sparse pool stays in 4 KiB
     * pages: a huge page would back 2 MiB for every block touched. */
    if (!fs->sparse && !is_pmem && fs->use_msync == 0)
        madvise(base, len, MADV_HUGEPAGE);
    snprintf(fs->path, sizeof(fs->path), "%s", path);
    set_views(fs);
    return 0;
}

void strata_unmap(struct strata_fs *fs)
{
    if (fs->base)
        pmem_unmap(fs->base, fs->map_len);
    fs->base = NULL;
}

static struct strata_lock_hooks hooks;

void strata_pool_lock_hooks(const struct strata_lock_hooks *h)
{
    hooks = *h;
}

/* The flock of the pool is per open file description, so it does not keep
 * two threads of one process apart (the digest thread, digest_bg.c, and the
 * program's): this recursive mutex does.  strata_pool_lock takes it first;
 * readers of the shared area take it around reads an apply could change. */
static pthread_mutex_t pool_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

void pool_thread_lock(void) { pthread_mutex_lock(&pool_mu); }
void pool_thread_unlock(void) { pthread_mutex_unlock(&pool_mu); }

/* fork child: the holder's thread is gone, start the mutex afresh */
void pool_thread_lock_reset(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&pool_mu, &a);
    pthread_mutexattr_destroy(&a);
}

int strata_pool_lock(void)
{
    pool_thread_lock(); /* the flock is per process: threads queue here first */
    if (G.lock_depth++ > 0)
        return 0;
    while (flock(G.lock_fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            G.lock_depth--;
            pool_thread_unlock();
            return -1;
        }
    int32_t d = G.sb->dirty_pid;
    uint64_t ds = G.sb->dirty_start;
    G.sb->dirty_pid = G.pid;
    G.sb->dirty_start = G.start;
    strata_persist(&G.sb->dirty_pid, sizeof(G.sb->dirty_pid) + sizeof(G.sb->pad1) + sizeof(G.sb->dirty_start));
    if (hooks.acquired)
        hooks.acquired(d != 0 && !(d == G.pid && ds == G.start) && !strata_owner_alive(d, ds));
    return 0;
}

void strata_pool_unlock(void)
{
    if (--G.lock_depth > 0) {
        pool_thread_unlock();
        return;
    }
    if (hooks.releasing)
        hooks.releasing();
    G.sb->dirty_pid = 0;
    strata_persist(&G.sb->dirty_pid, sizeof(G.sb->dirty_pid));
    flock(G.lock_fd, LOCK_UN);
    pool_thread_unlock();
}

int strata_pool_ref_area(const char *path, uint64_t *off, uint64_t *len, uint64_t *table, char *err,
                         size_t errlen)
{
    struct strata_fs fs = {0};
    if (errlen)
        err[0] = 0;
    if (strata_map(path, &fs, 1, err, errlen) != 0)
        return -1;
    *off = fs.sb->off_ref;
    *len = fs.sb->ref_bytes;
    *table = STRATA_REF_TABLE;
    strata_unmap(&fs);
    return 0;
}

