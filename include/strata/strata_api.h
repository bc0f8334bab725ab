/*
 * Public C API of libstrata (LibFS).  Paths are pool paths ("/dir/file"); the
 * LD_PRELOAD shim maps "<mount prefix>/..." onto them.  File descriptors are
 * real kernel fd numbers (each Strata file reserves one on /dev/null), so they
 * never collide with kernel fds.  Errors: -1 with errno set, as in libc.
 *
 * Persistence point (contract 5): a write is durable when strata_write returns
 * (its log entry is persisted); strata_fsync only flushes nothing more.
 */
#ifndef STRATA_API_H
#define STRATA_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* CDEF-BEGIN */
/* Pool layout v2.  ref_bytes: size of the ref area (a multiple of 4096, at
 * least 2 pages: its first page is the TAS ownership table); 0 = default,
 * pool_size / 8.  strata_mkfs uses the default. */
int strata_mkfs(const char *pool_path, uint64_t pool_size, uint32_t nslots,
                uint64_t log_bytes, uint32_t ninodes);
int strata_mkfs_ref(const char *pool_path, uint64_t pool_size, uint32_t nslots,
                    uint64_t log_bytes, uint32_t ninodes, uint64_t ref_bytes);
/* 0 when these mkfs parameters make a pool; else -1 (EINVAL) and a sentence
 * in msg naming the parameter and the limit it breaks. */
int strata_mkfs_explain(const char *pool_path, uint64_t pool_size, uint32_t nslots,
                        uint64_t log_bytes, uint32_t ninodes, uint64_t ref_bytes,
                        char *msg, size_t msglen);
/* Ref area of a pool file from its validated superblock, without mounting:
 * pool byte offset and length (the whole area, table page included) and the
 * table size.  -1 with errno and a message in err when it is not a v2 pool. */
int strata_pool_ref_area(const char *pool_path, uint64_t *off, uint64_t *len,
                         uint64_t *table, char *err, size_t errlen);
int strata_attach(const char *pool_path); /* NULL: $STRATA_POOL or /dev/shm/strata.pool */
void strata_detach(void);
int strata_is_fd(int fd);

int strata_open(const char *path, int flags, unsigned int mode);
int strata_close(int fd);
ssize_t strata_read(int fd, void *buf, size_t len);
ssize_t strata_pread(int fd, void *buf, size_t len, int64_t off);
ssize_t strata_write(int fd, const void *buf, size_t len);
ssize_t strata_pwrite(int fd, const void *buf, size_t len, int64_t off);
int64_t strata_lseek(int fd, int64_t off, int whence);
int strata_fsync(int fd);
int strata_ftruncate(int fd, int64_t size);
int strata_dup(int oldfd, int newfd); /* newfd < 0: any */
int strata_unlink(const char *path);
int strata_rmdir(const char *path);
int strata_mkdir(const char *path, unsigned int mode);
int strata_rename(const char *from, const char *to);
int strata_link(const char *from, const char *to);     /* hard link */
int strata_symlink(const char *target, const char *path);
ssize_t strata_readlink(const char *path, char *buf, size_t len);
int strata_lstat(const char *path, struct stat *st);
int strata_realpath_pool(const char *path, char *out); /* out: PATH_MAX bytes, a pool path */
int strata_chmod(const char *path, unsigned int mode);
int strata_fchmod(int fd, unsigned int mode);

/* Contract 3: log a write whose data is an extent already in the pool's ref
 * area (pool byte offset).  The caller must have stored the data; it is
 * persisted and checksummed here, and digest copies it into the file. */
ssize_t strata_write_ref(int fd, uint64_t pool_off, size_t len);
ssize_t strata_pwrite_ref(int fd, uint64_t pool_off, size_t len, int64_t off);
/* The ref area: mapped address, pool offset and length. */
int strata_ref_area(void **addr, uint64_t *pool_off, uint64_t *len);

/* ORP (docs/orp-contract.md).  [va, va+len) is a mapping of the pool file
 * (fd, same dev/ino as the attached pool) at file_off, inside the ref area
 * after its table page: then 0; EXDEV for another file, EINVAL otherwise.
 * Every write variant logs each piece of its source of at least
 * STRATA_REF_MIN bytes that lies in a registered map as a reference to
 * file_off + (piece - va) instead of copying it. */
#define STRATA_REF_MIN 16384
int strata_nvm_map(int fd, uint64_t file_off, const void *va, size_t len);
int strata_nvm_unmap(const void *va);
/* 1 while an undigested entry of this process references any byte of the
 * range (it must not be overwritten), else 0. */
int strata_ref_busy(const void *va, size_t len);
/* Digest this process's log now (entries digested, or -1); afterwards
 * strata_ref_busy is 0 everywhere. */
int64_t strata_digest_self(void);
/* Start the same in the background and return at once: strata_ref_busy goes
 * to 0 once the thread has digested (0; also when nothing is referenced).
 * -1 when there is no background thread (STRATA_DIGEST_THREAD=0): call
 * strata_digest_self. */
int strata_digest_kick(void);

/* Apply this process's log and every dead process's log; request a digest
 * from live owners.  Returns the number of entries digested, or -1. */
int64_t strata_digest(void);
/* Consistency check; writes a report into buf.  Returns the number of
 * problems found (0 = clean) or -1 if the pool cannot be attached. */
int strata_fsck(const char *pool_path, char *buf, size_t len);
/* "<d|-> <size> <name>" lines for a directory; returns the entry count. */
int strata_ls(const char *path, char *buf, size_t len);
/* "key value" lines describing the attached pool. */
int strata_info(char *buf, size_t len);
/* "key value" lines: data capacity, used, free, reserved, backing file
 * system free, log usage (strata df). */
int strata_df(char *buf, size_t len);
/* The same for statfs: 4 KiB blocks and inodes. */
int strata_space(uint64_t *blocks, uint64_t *bfree, uint64_t *bavail, uint64_t *files, uint64_t *ffree);
/* CDEF-END */

/* Vector IO.  Each call is one atomic log transaction (all of it survives
 * a crash or none), unless its log footprint exceeds the log (then it is
 * logged in quarter-log transactions, as a large strata_write is).
 * off == -1: the file position (as pwritev2/preadv2); flags: RWF_* (RWF_APPEND
 * honoured; HIPRI, DSYNC, SYNC, NOWAIT accepted; others EOPNOTSUPP). */
ssize_t strata_writev(int fd, const struct iovec *iov, int cnt);
ssize_t strata_pwritev2(int fd, const struct iovec *iov, int cnt, int64_t off, int flags);
ssize_t strata_readv(int fd, const struct iovec *iov, int cnt);
ssize_t strata_preadv2(int fd, const struct iovec *iov, int cnt, int64_t off, int flags);

/* Directory iteration (used by the shim's opendir/readdir). */
struct strata_dirent_out {
    uint32_t ino;
    unsigned char type; /* DT_REG / DT_DIR */
    char name[256];
};
int strata_listdir(const char *path, struct strata_dirent_out **out);
int strata_stat(const char *path, struct stat *st);
int strata_fstat(int fd, struct stat *st);
int strata_access(const char *path, int mode);
/* chown: (uid_t)-1 / (gid_t)-1 leave a field as it is.  utime: mtime in
 * seconds, or -1 for now (explicit: the caller gave a time, which needs
 * ownership; "now" needs write access).  fd < 0: by path. */
int strata_chown(const char *path, int fd, uid_t uid, gid_t gid);
int strata_utime(const char *path, int fd, int64_t mtime, int explicit_time);
/* The same on a final symbolic link itself (lchown, lutimes, AT_SYMLINK_NOFOLLOW). */
int strata_lchown(const char *path, uid_t uid, gid_t gid);
int strata_lutime(const char *path, int64_t mtime, int explicit_time);
const char *strata_fd_path(int fd); /* pool path an fd was opened with */
int strata_fd_flags(int fd);
int strata_fd_setflags(int fd, int flags);

#endif
