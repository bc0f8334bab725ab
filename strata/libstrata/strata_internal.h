/* Internal state and helpers shared by the libstrata source files. */
#ifndef STRATA_INTERNAL_H
#define STRATA_INTERNAL_H

#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kb/stats.h"
#include "strata/strata_api.h"
#include "strata/strata_layout.h"
#include "strata/strata_ofd.h"

/* The largest file the block map reaches (direct, one indirect, one double-
 * and one triple-indirect block: about 4 TiB).  Every call that could make a
 * file larger fails with EFBIG before anything is logged, as Linux does past
 * a file system's s_maxbytes: an entry digest cannot apply would stay in its
 * log, invisible to every other process. */
#define STRATA_PTRS_2 ((uint64_t)STRATA_PTRS_PER_BLOCK * STRATA_PTRS_PER_BLOCK)
#define STRATA_MAX_FILE_BLOCKS                                                   \
    ((uint64_t)STRATA_NDIRECT + STRATA_PTRS_PER_BLOCK + STRATA_PTRS_2 +           \
     STRATA_PTRS_2 * STRATA_PTRS_PER_BLOCK)
#define STRATA_MAX_FILE_BYTES (STRATA_MAX_FILE_BLOCKS * STRATA_BLOCK)

/* One pending (undigested) data op of this process, for the read overlay. */
struct pend_op {
    uint8_t kind;            /* STRATA_E_WRITE(_REF) or STRATA_E_TRUNCATE */
    uint64_t off, len;       /* write range, or new size in len */
    const char *data;        /* in the log or the ref area */
};

struct pend_inode {
    uint32_t gen;
    uint64_t size;           /* logical size including pending ops */
    uint32_t nops, cap;
    struct pend_op *ops;
};

struct strata_counters {
    uint64_t *appends, *log_bytes, *fsyncs, *digests, *digested_entries,
        *digested_bytes, *coalesced, *recoveries, *torn, *enospc, *lease_waits,
        *ref_writes, *repairs, *ref_bytes, *inline_bytes, *inline_large_bytes, *ref_fallbacks,
        *ref_fallback_small, *ref_fallback_nomem, *ref_digests, *ofd_shared, *ofd_adopted,
        *blocks_punched, *pages_populated, *backing_enospc, *bg_passes, *bg_kicks, *bg_threads, *log_full,
        *maps, *writebacks, *writeback_bytes, *shadow_files, *locks, *lock_files,
        *published, *foreign_digests;
};

struct strata_fs {
    char *base;
    size_t map_len;
    int is_pmem, use_msync;
    int sparse;              /* pool is a regular file: pages are backed on demand (space.c) */
    uint64_t log_backed;     /* own log bytes known backed (space.c) */
    int lock_fd;
    pid_t pid;
    uint64_t start;          /* this process's start time (with pid: its identity) */
    char path[512];
    dev_t pool_dev;          /* identity of the pool file (strata_nvm_map) */
    ino_t pool_ino;
    struct strata_super *sb;
    struct strata_slot *slots;
    char *logs;
    struct strata_inode *inodes;
    struct strata_dirent *dirents;
    uint8_t *bitmap;
    int slot;                /* own log slot, -1 until the first logged op */
    uint64_t tail;           /* own log append offset */
    uint64_t credits_left;   /* reserved data blocks not yet charged */
    struct pend_inode **pend; /* per inode number; NULL: nothing pending */
    uint32_t *wlease;        /* per inode: this process's writable opens */
    uint32_t *opens;         /* per inode: this process's open files */
    int lock_depth;          /* pool lock nesting within this process */
    pthread_mutex_t mu;      /* serialises every LibFS call in the process */
    struct kb_stats_page *stats;
    struct strata_counters c;
};

extern struct strata_fs G;

/* Double *cap (from 16) and realloc *arr to it; -1 (arr untouched) on OOM. */
static inline int grow_array(void *arr, uint32_t *cap, size_t elem)
{
    uint32_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*(void **)arr, n * elem);
    if (p == NULL)
        return -1;
    *(void **)arr = p;
    *cap = n;
    return 0;
}

/* checksum.c */
uint32_t strata_csum(uint64_t seed, const void *buf, size_t len);
/* Payload checksum; with dst != NULL also copies src there (non-temporal
 * stores for whole cache lines when asked).  dst must be 16-byte aligned. */
uint32_t strata_copy_csum(void *dst, const void *src, size_t len, uint64_t seed, int nontemporal);
#define strata_data_csum(src, len, seed) strata_copy_csum(NULL, (src), (len), (seed), 0)
/* strata_data_csum, passing every byte of the range to flush once, a
 * stretch at a time right after summing it (one pass over the lines) */
uint32_t strata_csum_flush(const void *src, size_t len, uint64_t seed,
                           void (*flush)(const void *addr, size_t len));

/* pool.c: the bottom layer (layout, map, persist, the pool lock) */
void strata_persist(const void *addr, size_t len);
/* Copy into the pool (src NULL: zeros) and make it durable, without a fence
 * at the end when nodrain: the caller drains (strata_drain) before the
 * store that makes it reachable.  Streaming stores on pmem and tmpfs. */
void strata_fill_nodrain(void *dst, const void *src, size_t len);
void strata_drain(void);
/* Write back without the fence (msync where the pool is not pmem) */
void strata_flush(const void *addr, size_t len);
/* strata_data_csum of a range, which it makes durable on the way but for
 * the fence (strata_drain) */
uint32_t strata_persist_csum_nodrain(const void *addr, size_t len, uint64_t seed);
int strata_map(const char *path, struct strata_fs *fs, int verbose_err, char *err, size_t errlen);
int pool_layout(struct strata_super *sb);          /* -1: the parameters do not fit */
uint64_t pool_default_size(const char *path);     /* --size auto */
int strata_pool_lock(void);          /* flock, then the hooks (recovery if needed) */
void strata_pool_unlock(void);
/* What the lock runs for the layers above it (installed by mount.c):
 * acquired once a hold begins (holder_died: the previous holder died in the
 * middle of a mutation), releasing before the hold ends. */
struct strata_lock_hooks {
    void (*acquired)(int holder_died);
    void (*releasing)(void);
};
void strata_pool_lock_hooks(const struct strata_lock_hooks *h);
void strata_unmap(struct strata_fs *fs);
int strata_pid_alive(pid_t pid);                    /* exists and is not a zombie */
uint64_t strata_proc_start(pid_t pid);              /* 0 if no such live process */
int strata_owner_alive(pid_t pid, uint64_t start);  /* same pid and start time */

/* mount.c: attach/detach (strata_api.h) and the recovery they and the lock
 * run after a crash. */
int strata_ensure_attached(void);

/* space.c: backing pages of a sparse pool, free space */
int pool_back(uint64_t off, uint64_t len);  /* fallocate; -1 ENOSPC */
int pool_back_block(uint32_t b);
void pool_punch_block(uint32_t b);
void pool_punch_flush(void);
void pool_space_lock(void);
uint64_t backing_free_blocks(void);
uint64_t strata_free_blocks(void);          /* min(pool free, backing file system free) */
uint64_t credits_held(void);                /* blocks reserved by live writers */

/* shared.c: inodes, blocks, file data in the shared area */
struct strata_inode *ino_get(uint32_t ino);
int ino_alive(uint32_t ino, uint32_t gen);
uint32_t ino_alloc(void);
void ino_init(uint32_t ino, uint32_t gen, uint32_t mode, uint32_t parent, uint32_t uid, uint32_t gid);
void ino_free(uint32_t ino);
void ino_release(uint32_t ino); /* free, or orphan while this process has it open */
void orphan_sweep(void);        /* free orphans whose opener died */
int shared_write(uint32_t ino, uint64_t off, const void *buf, uint64_t len);
int shared_truncate(uint32_t ino, uint64_t size);
void shared_trim(uint32_t ino); /* repair: nothing mapped or non-zero past EOF */
int shared_read(uint32_t ino, uint64_t off, void *buf, uint64_t len);
uint64_t bitmap_rebuild(void);       /* returns free data blocks */
uint64_t blocks_needed(uint32_t ino, uint32_t gen, uint64_t size, uint64_t off, uint64_t len);
int blk_used(uint32_t b);
int valid_blk(uint32_t b); /* names a data block of this pool */

/* perm.c: POSIX permission checks against the caller's effective ids
 * (real ids when real != 0, for access()); 0 or -1 with EACCES/EPERM. */
int perm_check(const struct strata_inode *in, int want, int real);
int perm_sticky(const struct strata_inode *dir, const struct strata_inode *victim); /* EPERM */
int perm_owner(const struct strata_inode *in);                                       /* EPERM */
int perm_in_group(gid_t gid, int real); /* the caller's (e/r)gid or a supplementary group */

/* dir.c: dirent hash on (parent, name) and path resolution */
struct strata_dirent *dir_lookup(uint32_t parent, const char *name, size_t nlen);
int dir_insert(uint32_t parent, const char *name, size_t nlen, uint32_t ino);
void dir_remove(struct strata_dirent *d);
int dir_is_empty(uint32_t ino);
/* path_resolve: inode of a path.  path_parent: inode of the parent directory
 * plus the last component (name, nlen). */
int path_resolve(const char *path, uint32_t *ino);          /* follows a final symbolic link */
int path_resolve_nofollow(const char *path, uint32_t *ino); /* lstat, O_NOFOLLOW, readlink */
int path_canonical(const char *path, char out[PATH_MAX]);   /* realpath, as a pool path */
int symlink_target(uint32_t ino, char *buf, size_t len);    /* NUL-terminated; its length */
int path_parent(const char *path, uint32_t *parent, const char **name, size_t *nlen);
int dir_path_of(uint32_t ino, char out[PATH_MAX]);           /* a directory's path now, from its inode */
int strata_dir_path_fresh(uint32_t ino, uint32_t gen, char *path, size_t cap); /* libfs.c */
extern const char strata_removed_dir[];
int strata_fd_reopen_path(int fd, char out[PATH_MAX]); /* libfs.c: /proc/self/fd/N of a Strata fd */

/* log.c: own-slot appends and slot scanning */
int log_claim_slot(void);
/* Give this process's slot back while its log is empty (digested); the next
 * write claims one again (G.mu held, pool lock not). */
void log_release_slot(void);
struct strata_entry *log_append(struct strata_entry *hdr, const void *payload, size_t plen);
typedef int (*entry_fn)(struct strata_entry *e, uint64_t off, void *arg);
/* Calls fn for every valid entry of the slot (entries of a transaction only
 * once it is closed); returns the end offset.  verify 0 checks the entries'
 * shape but not their checksums nor those of referenced extents (the
 * owner's own digest: it computed them, log.c entry_valid). */
uint64_t log_scan(int slot, entry_fn fn, void *arg, int *torn);
uint64_t log_scan_opt(int slot, entry_fn fn, void *arg, int *torn, int verify);
uint64_t log_scan_range(int slot, uint64_t start, uint64_t limit, entry_fn fn, void *arg, int *torn,
                        int verify);
void log_reset_slot(int slot);
const char *entry_name(const struct strata_entry *e);
const char *entry_name2(const struct strata_entry *e);
const void *entry_payload(const struct strata_entry *e);

/* apply.c: applying entries to the shared area (idempotent on replay) */
int apply_namespace(const struct strata_entry *e);
int apply_data(const struct strata_entry *e);
int is_namespace(const struct strata_entry *e);
const char *entry_data(const struct strata_entry *e);

/* testhook.c */
#ifdef STRATA_TEST_HOOKS
void testhook_after_append(void); /* tests/strata/testhook.c, test builds only */
#endif

/* digest.c */
int64_t digest_slot(int slot);
int64_t digest_dead_slots(void); /* returns entries digested */
int64_t digest_dead_slots_err(int *err);
int64_t digest_foreign_prefix(int slot, uint64_t start, uint64_t *end);
int see_foreign_writes(uint32_t ino); /* foreign.c: before reading ino's bytes or size */
int digest_own(void);
int64_t digest_own_prefix(void); /* background: apply the own log up to its tail, no reset */

/* digest_bg.c: the background digest thread and the in-process pool mutex */
void pool_thread_lock(void);   /* serialises threads of this process on the shared area */
void pool_thread_unlock(void);
void pool_thread_lock_reset(void);  /* fork child (pool.c) */
void bg_kick(void);            /* the own log passed the threshold: digest in the background */
int bg_wanted(void);           /* enough of the own log is unapplied to kick the thread */
int bg_enabled(void);
void bg_kick_refs(void);       /* references wait: digest and reset in the background */
uint64_t bg_applied(void);     /* own log offset up to which the shared area has the entries */
void bg_set_applied(uint64_t off);
void bg_log_reset(void);
void bg_stop(void);            /* join the thread (detach, exit) */
void bg_atfork_prepare(void);
void bg_atfork_parent(void);
void bg_atfork_child(void);

/* libfs_io.c: the read overlay of this process's undigested data ops */
void pend_clear_all(void);
void pend_drop(uint32_t ino);
int pend_add(uint32_t ino, uint32_t gen, uint8_t kind, uint64_t off, uint64_t len, const char *data);
uint64_t file_size(uint32_t ino, uint32_t gen);
void maybe_digest(void); /* at the log fill threshold or on request */
struct sfile;
int reserve(struct sfile *f, uint64_t off, uint64_t len); /* blocks digest may allocate */

/* libfs_write.c: the write path shared by every write variant */
struct sfile *writable(int fd);
/* iovec count and total as the kernel checks them, and RWF_* flags. */
int iov_check(const struct iovec *iov, int cnt, int flags, size_t *total);

/* libfs_ref.c: NVM maps (ORP) and the references this process has logged
 * but not digested */
/* Length of the first part of [p, p+len) that is either inside one map
 * (*pool_off = its pool offset) or outside every map (*pool_off = UINT64_MAX). */
size_t nvm_span(const char *p, size_t len, uint64_t *pool_off);
int refs_reserve(uint32_t n);       /* room to track n more references */
void refs_add(uint64_t pool_off, uint64_t len);
void refs_clear(void);              /* the own log was reset (digested) */
int refs_over_trigger(void);        /* outstanding bytes above the digest trigger */

/* libfs.c: open file table.  Offset, status flags and lease holder live in
 * the OFD state (o), shared with other processes once the OFD is shared. */
struct sfile {
    uint32_t ino, gen;
    int is_dir;
    int refs;                /* fd numbers of this process that name it */
    int shared;              /* o is a MAP_SHARED memfd page (ofd.c), else malloc'd */
    pid_t owner;             /* process that counted it in G.opens */
    pid_t lease_owner;       /* process that counted it in G.wlease (holds the lease) */
    struct strata_ofd *o;
    const char *path;        /* o->path */
};
struct sfile *sfile_get(int fd);
int sfile_fd_limit(void);                    /* 1 + highest fd ever entered */
void sfile_install(int fd, struct sfile *f); /* adoption: enter an inherited fd */
void sfile_adopt(struct sfile *f);           /* adoption: open and lease accounting */
int sfile_may_write(struct sfile *f);        /* lease check of a write (EBADF/EBUSY) */
void lease_release_stale(void);
void strata_before_spawn(int inheritable_only); /* digest, share OFDs (ofd.c) */
/* ofd.c */
struct strata_ofd *ofd_new(const char *path, uint32_t ino, uint32_t gen, int flags, int is_dir);
void ofd_free(struct sfile *f);
int ofd_share_all(int inheritable_only);
int ofd_scan(void);
int ofd_adopt(void);
int ofd_share_fd(int fd);          /* before an fd goes to another process (SCM_RIGHTS, spawn) */
int ofd_adopt_received(int fd);    /* an fd received over a Unix socket */
#define LOCKED(expr)                                  \
    ({                                                \
        pthread_mutex_lock(&G.mu);                    \
        __typeof__(expr) r__ = strata_ensure_attached() == 0 ? (expr) : -1; \
        pthread_mutex_unlock(&G.mu);                  \
        r__;                                          \
    })
/* libfs_ns.c: namespace ops (logged, then applied under the pool lock) */
int ns_create(uint32_t parent, const char *name, size_t nlen, uint32_t mode, uint32_t *ino_out);
int ns_create_target(uint32_t parent, const char *name, size_t nlen, uint32_t mode, const char *target,
                     size_t tlen, uint32_t *ino_out);
int ns_claim(void);
int ns_commit(struct strata_entry *h, const char *n1, size_t l1, const char *n2, size_t l2);

#endif
