/*
 * mmap of Strata files (mmap_shadow.c) and kernel file locks for Strata fds
 * (locks.c): the hooks LibFS calls and the entry points the shim uses.
 */
#ifndef STRATA_MMAP_SHADOW_H
#define STRATA_MMAP_SHADOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sfile;
struct flock;

/* /dev/shm/strata.<fs_id>.<ino>.<gen>.<kind>: the one name every process of
 * the pool derives for an inode's shadow ("map") or lock file ("lock"). */
void shadow_name(char *out, size_t len, uint32_t ino, uint32_t gen, const char *kind);

/* LibFS hooks (G.mu held).  They do nothing unless the inode's `mapped`
 * hint is set, i.e. some process of the pool may have a shadow of it. */
void shadow_after_write(uint32_t ino, uint32_t gen, uint64_t off, const void *data, uint64_t len);
void shadow_after_truncate(uint32_t ino, uint32_t gen, uint64_t size);
/* Read through the shadow: bytes read, -1 with errno, or -2 when the file
 * has no shadow (read Strata's contents). */
ssize_t shadow_pread(uint32_t ino, uint32_t gen, void *buf, size_t len, uint64_t off);
void shadow_on_close(uint32_t ino, uint32_t gen, int was_writable); /* last ref of an OFD */
int shadow_sync_ino(uint32_t ino, uint32_t gen);                    /* fsync: write back */
void shadow_writeback_all(void);                                    /* exec, exit */

/* Shim entry points (shim_mmap.c). */
void *strata_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int shadow_has_maps(void); /* any Strata mapping in this process (fast path) */
int strata_munmap(void *addr, size_t len);
void strata_map_replaced(void *addr, size_t len); /* MAP_FIXED over it */
int strata_msync(void *addr, size_t len, int flags);
void *strata_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *new_addr);
int strata_mprotect(void *addr, size_t len, int prot);

/* locks.c.  strata_lock_aware: this process has taken a file lock; its
 * writes skip leases and are digested before it releases a lock, or before
 * they return while it has a shared mapping (strata_publish). */
extern int strata_lock_aware;
void strata_publish(void);
/* At attach: STRATA_SHARED_WRITERS (see locks.c). */
void strata_shared_writers_init(void);
int strata_lock_fcntl(int fd, int cmd, struct flock *fl);
int strata_flock(int fd, int op);
int strata_lockf(int fd, int cmd, off_t len);
void locks_on_close(struct sfile *f, int last); /* every close of a Strata fd (G.mu held) */
void locks_sweep(void);                         /* lock files of freed inodes */
/* each /dev/shm file of this pool: strata.<fs_id>.<ino>.<gen>.<kind> */
void strata_shm_each(void (*fn)(const char *path, unsigned ino, unsigned gen, const char *kind));
int strata_private_fd(int fd);                  /* a lock file or shadow fd of libstrata */
int strata_private_fd_in(unsigned first, unsigned last);
int shadow_owns_fd_in(unsigned first, unsigned last);
int strata_private_fd_high(int fd);             /* moved to the top of the fd range */
void strata_private_fd_move(int fd);            /* dup2 onto it: move it away first */
int shadow_owns_fd(int fd);
void shadow_fd_moved(int from, int to);

#endif
