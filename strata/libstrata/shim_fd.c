/*
 * LD_PRELOAD shim, descriptor-based calls: a Strata fd (see libfs.c) goes to
 * LibFS, any other fd to the next libc definition.
 *
 * fcntl: F_GETFL/F_SETFL and F_GETFD/F_SETFD behave as on Linux; record
 * locks (F_SETLK/F_SETLKW/F_GETLK/F_OFD_*), flock and lockf are the kernel's,
 * on the inode's lock file (locks.c).  mmap and friends: shim_mmap.c.
 */
#include "shim.h"
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);

/* The pool's lock fd is ours: programs that close or dup2 over every fd
 * (daemons) must not take it away.  close pretends; dup2/dup3 onto it move
 * it first (the flock belongs to the open file description, not the number). */
static void move_lock_fd(int fd)
{
    if (G.base != NULL)
        strata_private_fd_move(fd); /* lock file and shadow fds (locks.c) */
    if (G.base == NULL || fd != G.lock_fd)
        return;
    int n = (int)REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
    if (n >= 0) {
        G.lock_fd = n;
        REAL(close)(fd);
    }
}

int close(int fd)
{
    if (strata_is_fd(fd) && !SHIM_FOREIGN_CHILD())
        return strata_close(fd);
    if (G.base != NULL && (fd == G.lock_fd || strata_private_fd(fd)))
        return 0;
    return REAL(close)(fd);
}

/* close_range/closefrom: Strata fds in the range are closed through LibFS
 * (otherwise the kernel would reuse their numbers under our table), the
 * pool's lock fd is skipped, the rest goes to the kernel. */
int close_range(unsigned int first, unsigned int last, int flags)
{
    if (flags != 0 || G.base == NULL || SHIM_FOREIGN_CHILD())
        return REAL(close_range)(first, last, flags);
    for (unsigned int fd = first; fd <= last && fd < 65536; fd++)
        if (strata_is_fd((int)fd))
            strata_close((int)fd);
    if (strata_private_fd_in(first, last)) { /* lock file or shadow fds: one by one */
        for (unsigned int fd = first; fd <= last && fd < 65536; fd++)
            if ((int)fd != G.lock_fd && !strata_private_fd((int)fd))
                REAL(close)((int)fd);
        return last >= 65536 ? REAL(close_range)(65536, last, 0) : 0;
    }
    unsigned int lock = (unsigned int)G.lock_fd;
    if (lock < first || lock > last)
        return REAL(close_range)(first, last, 0);
    int r = lock > first ? REAL(close_range)(first, lock - 1, 0) : 0;
    return lock < last && r == 0 ? REAL(close_range)(lock + 1, last, 0) : r;
}

void closefrom(int lowfd)
{
    close_range((unsigned int)lowfd, ~0u, 0);
}

ssize_t read(int fd, void *b, size_t n) { return strata_is_fd(fd) ? strata_read(fd, b, n) : REAL(read)(fd, b, n); }
ssize_t write(int fd, const void *b, size_t n)
{
    return strata_is_fd(fd) ? strata_write(fd, b, n) : REAL(write)(fd, b, n);
}
ssize_t pread(int fd, void *b, size_t n, off_t o)
{
    return strata_is_fd(fd) ? strata_pread(fd, b, n, o) : REAL(pread)(fd, b, n, o);
}
ssize_t pread64(int fd, void *b, size_t n, off64_t o)
{
    return strata_is_fd(fd) ? strata_pread(fd, b, n, o) : REAL(pread64)(fd, b, n, o);
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t o)
{
    return strata_is_fd(fd) ? strata_pwrite(fd, b, n, o) : REAL(pwrite)(fd, b, n, o);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off64_t o)
{
    return strata_is_fd(fd) ? strata_pwrite(fd, b, n, o) : REAL(pwrite64)(fd, b, n, o);
}

off_t lseek(int fd, off_t o, int w) { return strata_is_fd(fd) ? strata_lseek(fd, o, w) : REAL(lseek)(fd, o, w); }
off64_t lseek64(int fd, off64_t o, int w)
{
    return strata_is_fd(fd) ? strata_lseek(fd, o, w) : REAL(lseek64)(fd, o, w);
}

int fsync(int fd) { return strata_is_fd(fd) ? strata_fsync(fd) : REAL(fsync)(fd); }
int fdatasync(int fd) { return strata_is_fd(fd) ? strata_fsync(fd) : REAL(fdatasync)(fd); }
/* Redis's incremental fsync of an AOF rewrite or RDB calls sync_file_range:
 * a Strata write is durable when it returns (on the kernel fd, an O_PATH
 * descriptor, the call would fail with EBADF). */
int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags)
{
    if (!strata_is_fd(fd))
        return REAL(sync_file_range)(fd, off, n, flags);
    if (off < 0 || n < 0 || (flags & ~(unsigned)(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                                 SYNC_FILE_RANGE_WAIT_AFTER))) {
        errno = EINVAL;
        return -1;
    }
    return strata_fsync(fd);
}

int ftruncate(int fd, off_t n) { return strata_is_fd(fd) ? strata_ftruncate(fd, n) : REAL(ftruncate)(fd, n); }
int ftruncate64(int fd, off64_t n)
{
    return strata_is_fd(fd) ? strata_ftruncate(fd, n) : REAL(ftruncate64)(fd, n);
}

int fstat(int fd, struct stat *st) { return strata_is_fd(fd) ? strata_fstat(fd, st) : REAL(fstat)(fd, st); }
int fstat64(int fd, struct stat64 *st)
{
    return strata_is_fd(fd) ? strata_fstat(fd, (struct stat *)st) : REAL(fstat64)(fd, st);
}
int __fxstat(int ver, int fd, struct stat *st)
{
    return strata_is_fd(fd) ? strata_fstat(fd, st) : REAL(__fxstat)(ver, fd, st);
}
int __fxstat64(int ver, int fd, struct stat64 *st)
{
    return strata_is_fd(fd) ? strata_fstat(fd, (struct stat *)st) : REAL(__fxstat64)(ver, fd, st);
}

/* The reserved kernel fd is an O_PATH descriptor: never let these reach it. */
int fchmod(int fd, mode_t m) { return strata_is_fd(fd) ? strata_fchmod(fd, m) : REAL(fchmod)(fd, m); }
/* locks: kernel locks on the inode's lock file (locks.c); glibc's lockf
 * locks with an internal fcntl, so it is done there too */
int flock(int fd, int op) { return strata_is_fd(fd) ? strata_flock(fd, op) : REAL(flock)(fd, op); }
int lockf(int fd, int cmd, off_t len) { return strata_is_fd(fd) ? strata_lockf(fd, cmd, len) : REAL(lockf)(fd, cmd, len); }
int lockf64(int fd, int cmd, off64_t len)
{
    return strata_is_fd(fd) ? strata_lockf(fd, cmd, len) : REAL(lockf64)(fd, cmd, len);
}
int syncfs(int fd) { return strata_is_fd(fd) ? strata_fsync(fd) : REAL(syncfs)(fd); }
ssize_t readahead(int fd, off64_t off, size_t n) { return strata_is_fd(fd) ? 0 : REAL(readahead)(fd, off, n); }
int posix_fadvise(int fd, off_t o, off_t l, int adv)
{
    return strata_is_fd(fd) ? 0 : REAL(posix_fadvise)(fd, o, l, adv);
}
/* glibc's isatty asks with an internal ioctl: answer as for a file */
int isatty(int fd)
{
    if (!strata_is_fd(fd))
        return REAL(isatty)(fd);
    errno = ENOTTY;
    return 0;
}

/* ioctl on a Strata fd: none apply to a regular file here (FICLONE, tty
 * requests): ENOTTY, as a file system without the request would say. */
int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (strata_is_fd(fd)) {
        errno = ENOTTY;
        return -1;
    }
    return REAL(ioctl)(fd, req, arg);
}

/* Preallocation: extend the file (space is reserved when data is written). */
static int strata_fallocate(int fd, int mode, off_t off, off_t len)
{
    struct stat st;
    if (mode != 0 || off < 0 || len <= 0)
        return mode != 0 ? (errno = EOPNOTSUPP, -1) : (errno = EINVAL, -1);
    if (strata_fstat(fd, &st) != 0)
        return -1;
    if ((uint64_t)off + (uint64_t)len > STRATA_MAX_FILE_BYTES) {
        errno = EFBIG; /* as Linux past s_maxbytes (and for off + len overflowing) */
        return -1;
    }
    return off + len > st.st_size ? strata_ftruncate(fd, off + len) : 0;
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    return strata_is_fd(fd) ? strata_fallocate(fd, mode, off, len) : REAL(fallocate)(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    return strata_is_fd(fd) ? strata_fallocate(fd, mode, off, len) : REAL(fallocate64)(fd, mode, off, len);
}
/* posix_fallocate returns the error instead of setting errno */
int posix_fallocate(int fd, off_t off, off_t len)
{
    if (!strata_is_fd(fd))
        return REAL(posix_fallocate)(fd, off, len);
    return strata_fallocate(fd, 0, off, len) == 0 ? 0 : errno;
}
int posix_fallocate64(int fd, off64_t off, off64_t len)
{
    if (!strata_is_fd(fd))
        return REAL(posix_fallocate64)(fd, off, len);
    return strata_fallocate(fd, 0, off, len) == 0 ? 0 : errno;
}

int dup(int fd) { return strata_is_fd(fd) && !SHIM_FOREIGN_CHILD() ? strata_dup(fd, -1) : REAL(dup)(fd); }

int dup2(int fd, int nfd)
{
    if (SHIM_FOREIGN_CHILD())
        return REAL(dup2)(fd, nfd);
    if (strata_is_fd(fd)) {
        if (nfd >= 0 && nfd <= 2 && fd != nfd)
            shim_std_redirect(nfd, 0);
        if (fd != nfd)
            move_lock_fd(nfd);
        return strata_dup(fd, nfd);
    }
    if (fd != nfd && strata_is_fd(nfd))
        strata_close(nfd);
    move_lock_fd(nfd);
    return REAL(dup2)(fd, nfd);
}

int dup3(int fd, int nfd, int flags)
{
    if (SHIM_FOREIGN_CHILD())
        return REAL(dup3)(fd, nfd, flags);
    if (strata_is_fd(fd)) {
        if (nfd >= 0 && nfd <= 2 && fd != nfd)
            shim_std_redirect(nfd, 0);
        if (fd == nfd) {
            errno = EINVAL;
            return -1;
        }
        move_lock_fd(nfd);
        int r = strata_dup(fd, nfd);
        if (r >= 0 && (flags & O_CLOEXEC))
            REAL(fcntl)(r, F_SETFD, FD_CLOEXEC);
        return r;
    }
    if (strata_is_fd(nfd))
        strata_close(nfd);
    move_lock_fd(nfd);
    return REAL(dup3)(fd, nfd, flags);
}

static int strata_fcntl(int fd, int cmd, void *arg)
{
    switch (cmd) {
    case F_GETFL:
        return strata_fd_flags(fd);
    case F_SETFL:
        return strata_fd_setflags(fd, (int)(long)arg);
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        int nfd = (int)REAL(fcntl)(fd, cmd, (long)arg); /* lowest free >= arg */
        if (nfd < 0)
            return -1;
        REAL(close)(nfd);
        int r = strata_dup(fd, nfd);
        if (r >= 0 && cmd == F_DUPFD_CLOEXEC)
            REAL(fcntl)(r, F_SETFD, FD_CLOEXEC);
        return r;
    }
    case F_GETLK:
    case F_OFD_GETLK:
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW:
        return strata_lock_fcntl(fd, cmd, arg);
    default:
        return REAL(fcntl)(fd, cmd, arg); /* F_GETFD/F_SETFD act on the reserved fd */
    }
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return strata_is_fd(fd) && !SHIM_FOREIGN_CHILD() ? strata_fcntl(fd, cmd, arg) : REAL(fcntl)(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return strata_is_fd(fd) && !SHIM_FOREIGN_CHILD() ? strata_fcntl(fd, cmd, arg) : REAL(fcntl64)(fd, cmd, arg);
}
