/*
 * LD_PRELOAD shim, path-based calls.  Paths under the mount prefix
 * ($STRATA_MOUNT, default /strata) go to Strata; so do relative paths while
 * the working directory is inside it (chdir is tracked, since redis-server
 * chdirs to its data dir).  Everything else goes to the next libc definition.
 * Both the plain and the *64 / __xstat-style symbols Debian's glibc exposes
 * are defined; see strata/README.md for the list.
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* glibc >= 2.33 no longer declares the old versioned stat entry points. */
int __xstat(int ver, const char *path, struct stat *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);

/* ---- open ---- */

static int mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0;
}

/* A Strata file opened as fd 0, 1 or 2 (after close(1), say): stdio too. */
static int std_checked(int fd)
{
    if (fd >= 0 && fd <= 2)
        shim_std_redirect(fd, 0);
    return fd;
}

/* Shared body of the open family: fetch the optional mode, route, dispatch. */
#define OPEN_BODY(route, real_call)                                        \
    va_list ap;                                                            \
    va_start(ap, flags);                                                   \
    int mode = mode_arg(flags, ap);                                        \
    va_end(ap);                                                            \
    char p[PATH_MAX];                                                      \
    int r = (route);                                                       \
    return r < 0 ? -1 : r ? std_checked(strata_open(p, flags, (unsigned)mode)) : (real_call);

int open(const char *path, int flags, ...) { OPEN_BODY(shim_route_follow(path, p), REAL(open)(path, flags, mode)) }
int open64(const char *path, int flags, ...) { OPEN_BODY(shim_route_follow(path, p), REAL(open64)(path, flags, mode)) }
int openat(int dirfd, const char *path, int flags, ...)
{
    OPEN_BODY(shim_route_at_follow(dirfd, path, p), REAL(openat)(dirfd, path, flags, mode))
}
int openat64(int dirfd, const char *path, int flags, ...)
{
    OPEN_BODY(shim_route_at_follow(dirfd, path, p), REAL(openat64)(dirfd, path, flags, mode))
}

/* _FORTIFY_SOURCE callers (coreutils, tar) use the checked variants. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags); }

int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

/* ---- stat family ---- */

int stat(const char *path, struct stat *st) { ROUTE_FOLLOW_OR(path, strata_stat(sp, st), REAL(stat)(path, st)); }
int lstat(const char *path, struct stat *st) { ROUTE_OR(path, strata_lstat(sp, st), REAL(lstat)(path, st)); }
int stat64(const char *path, struct stat64 *st)
{
    ROUTE_FOLLOW_OR(path, strata_stat(sp, (struct stat *)st), REAL(stat64)(path, st));
}
int lstat64(const char *path, struct stat64 *st)
{
    ROUTE_OR(path, strata_lstat(sp, (struct stat *)st), REAL(lstat64)(path, st));
}
int __xstat(int ver, const char *path, struct stat *st)
{
    ROUTE_FOLLOW_OR(path, strata_stat(sp, st), REAL(__xstat)(ver, path, st));
}
int __lxstat(int ver, const char *path, struct stat *st)
{
    ROUTE_OR(path, strata_lstat(sp, st), REAL(__lxstat)(ver, path, st));
}
int __xstat64(int ver, const char *path, struct stat64 *st)
{
    ROUTE_FOLLOW_OR(path, strata_stat(sp, (struct stat *)st), REAL(__xstat64)(ver, path, st));
}
int __lxstat64(int ver, const char *path, struct stat64 *st)
{
    ROUTE_OR(path, strata_lstat(sp, (struct stat *)st), REAL(__lxstat64)(ver, path, st));
}

static int stat_at(int dirfd, const char *path, struct stat *st, int flags, int *handled)
{
    char p[PATH_MAX];
    *handled = 1;
    if ((flags & AT_EMPTY_PATH) && path && path[0] == 0 && strata_is_fd(dirfd))
        return strata_fstat(dirfd, st);
    int r = (flags & AT_SYMLINK_NOFOLLOW) ? shim_route_at(dirfd, path, p) : shim_route_at_follow(dirfd, path, p);
    if (r <= 0) {
        *handled = r < 0;
        return -1;
    }
    return (flags & AT_SYMLINK_NOFOLLOW) ? strata_lstat(p, st) : strata_stat(p, st);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    int h, r = stat_at(dirfd, path, st, flags, &h);
    return h ? r : REAL(fstatat)(dirfd, path, st, flags);
}
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    int h, r = stat_at(dirfd, path, (struct stat *)st, flags, &h);
    return h ? r : REAL(fstatat64)(dirfd, path, st, flags);
}
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
    int h, r = stat_at(dirfd, path, st, flags, &h);
    return h ? r : REAL(__fxstatat)(ver, dirfd, path, st, flags);
}
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
    int h, r = stat_at(dirfd, path, (struct stat *)st, flags, &h);
    return h ? r : REAL(__fxstatat64)(ver, dirfd, path, st, flags);
}

static void to_statx(const struct stat *st, struct statx *sx)
{
    memset(sx, 0, sizeof(*sx));
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = (uint32_t)st->st_blksize;
    sx->stx_nlink = (uint32_t)st->st_nlink;
    sx->stx_uid = st->st_uid;
    sx->stx_gid = st->st_gid;
    sx->stx_mode = (uint16_t)st->st_mode;
    sx->stx_ino = st->st_ino;
    sx->stx_size = (uint64_t)st->st_size;
    sx->stx_blocks = (uint64_t)st->st_blocks;
    sx->stx_atime.tv_sec = st->st_atim.tv_sec;
    sx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
    sx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
    sx->stx_dev_major = (uint32_t)(st->st_dev >> 8);
    sx->stx_dev_minor = (uint32_t)(st->st_dev & 0xff);
}

/* coreutils (ls, stat, cp) use statx */
int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *sx)
{
    struct stat st;
    int h, r = stat_at(dirfd, path, &st, flags, &h);
    if (!h)
        return REAL(statx)(dirfd, path, flags, mask, sx);
    if (r == 0)
        to_statx(&st, sx);
    return r;
}

/* ---- namespace ---- */

int unlink(const char *path) { ROUTE_OR(path, strata_unlink(sp), REAL(unlink)(path)); }
int rmdir(const char *path) { ROUTE_OR(path, strata_rmdir(sp), REAL(rmdir)(path)); }
int mkdir(const char *path, mode_t mode) { ROUTE_OR(path, strata_mkdir(sp, mode), REAL(mkdir)(path, mode)); }
int access(const char *path, int mode) { ROUTE_OR(path, strata_access(sp, mode), REAL(access)(path, mode)); }
/* glibc's euidaccess checks with internal calls (sort uses it on inputs) */
int euidaccess(const char *path, int mode) { ROUTE_OR(path, strata_access(sp, mode), REAL(euidaccess)(path, mode)); }
int eaccess(const char *path, int mode) { ROUTE_OR(path, strata_access(sp, mode), REAL(eaccess)(path, mode)); }
int chmod(const char *path, mode_t mode) { ROUTE_OR(path, strata_chmod(sp, mode), REAL(chmod)(path, mode)); }

int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    if (r > 0 && (flags & AT_SYMLINK_NOFOLLOW)) { /* Linux cannot chmod a link itself */
        struct stat st;
        if (strata_lstat(p, &st) != 0)
            return -1;
        if (S_ISLNK(st.st_mode)) {
            errno = EOPNOTSUPP;
            return -1;
        }
    }
    return r == 0 ? REAL(fchmodat)(dirfd, path, mode, flags) : r < 0 ? -1 : strata_chmod(p, mode);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    if (r == 0)
        return REAL(unlinkat)(dirfd, path, flags);
    return r < 0 ? -1 : (flags & AT_REMOVEDIR) ? strata_rmdir(p) : strata_unlink(p);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r == 0 ? REAL(mkdirat)(dirfd, path, mode) : r < 0 ? -1 : strata_mkdir(p, mode);
}

/* mknod of a Strata path: a regular file is made as open(O_CREAT | O_EXCL)
 * does; FIFOs, devices and sockets Strata cannot hold: EPERM, as Linux on a
 * file system without them (they used to reach the kernel: ENOENT). */
static int strata_mknod(const char *p, mode_t mode)
{
    mode_t type = mode & S_IFMT;
    if (type == 0 || type == S_IFREG) {
        int fd = strata_open(p, O_CREAT | O_EXCL | O_WRONLY, mode & 07777);
        return fd < 0 ? -1 : strata_close(fd);
    }
    struct stat st;
    if (strata_lstat(p, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    if (errno != ENOENT)
        return -1;
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", p);
    char *slash = strrchr(parent, '/');
    if (slash != NULL)
        slash[slash == parent ? 1 : 0] = 0;
    if (slash == NULL || strata_stat(parent, &st) != 0) /* ENOENT, ENOTDIR, EACCES of the walk */
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    errno = type == S_IFIFO || type == S_IFCHR || type == S_IFBLK || type == S_IFSOCK ? EPERM : EINVAL;
    return -1;
}

int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r == 0 ? REAL(mknodat)(dirfd, path, mode, dev) : r < 0 ? -1 : strata_mknod(p, mode);
}
int mknod(const char *path, mode_t mode, dev_t dev) { return mknodat(AT_FDCWD, path, mode, dev); }
int mkfifoat(int dirfd, const char *path, mode_t mode)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r == 0 ? REAL(mkfifoat)(dirfd, path, mode) : r < 0 ? -1 : strata_mknod(p, S_IFIFO | (mode & 07777));
}
int mkfifo(const char *path, mode_t mode) { return mkfifoat(AT_FDCWD, path, mode); }

int faccessat(int dirfd, const char *path, int mode, int flags)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r == 0 ? REAL(faccessat)(dirfd, path, mode, flags) : r < 0 ? -1 : strata_access(p, mode);
}

static int rename_routed(int r1, const char *p1, int r2, const char *p2)
{
    if (r1 < 0 || r2 < 0)
        return -1;
    if (r1 != r2) {
        errno = EXDEV; /* across file systems, as the kernel says */
        return -1;
    }
    return strata_rename(p1, p2);
}

int rename(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    int r1 = shim_route(from, a), r2 = shim_route(to, b);
    if (r1 == 0 && r2 == 0)
        return REAL(rename)(from, to);
    return rename_routed(r1, a, r2, b);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    int r1 = shim_route_at(fd1, from, a), r2 = shim_route_at(fd2, to, b);
    if (r1 == 0 && r2 == 0)
        return REAL(renameat)(fd1, from, fd2, to);
    return rename_routed(r1, a, r2, b);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags)
{
    char a[PATH_MAX], b[PATH_MAX];
    int r1 = shim_route_at(fd1, from, a), r2 = shim_route_at(fd2, to, b);
    if (r1 == 0 && r2 == 0)
        return REAL(renameat2)(fd1, from, fd2, to, flags);
    if (flags) {
        errno = EINVAL; /* RENAME_NOREPLACE etc. not supported on Strata */
        return -1;
    }
    return rename_routed(r1, a, r2, b);
}

static int truncate_path(const char *p, off_t len)
{
    int fd = strata_open(p, O_WRONLY, 0);
    if (fd < 0)
        return -1;
    int r = strata_ftruncate(fd, len);
    int e = errno;
    strata_close(fd);
    errno = e;
    return r;
}

int truncate(const char *path, off_t len) { ROUTE_OR(path, truncate_path(sp, len), REAL(truncate)(path, len)); }
int truncate64(const char *path, off64_t len)
{
    ROUTE_OR(path, truncate_path(sp, len), REAL(truncate64)(path, len));
}

/* ---- extended attributes: Strata files have none ---- */

/* l* variants (nofollow) look at a final symbolic link itself */
static int no_xattr_at(const char *p, int list, int nofollow)
{
    struct stat st;
    if ((nofollow ? strata_lstat(p, &st) : strata_stat(p, &st)) != 0)
        return -1;
    if (list)
        return 0;
    errno = ENODATA;
    return -1;
}
#define no_xattr(p, list) no_xattr_at((p), (list), 0)

ssize_t getxattr(const char *path, const char *name, void *v, size_t n)
{
    ROUTE_OR(path, no_xattr(sp, 0), REAL(getxattr)(path, name, v, n));
}
ssize_t lgetxattr(const char *path, const char *name, void *v, size_t n)
{
    ROUTE_OR(path, no_xattr_at(sp, 0, 1), REAL(lgetxattr)(path, name, v, n));
}
ssize_t listxattr(const char *path, char *l, size_t n) { ROUTE_OR(path, no_xattr(sp, 1), REAL(listxattr)(path, l, n)); }
ssize_t llistxattr(const char *path, char *l, size_t n)
{
    ROUTE_OR(path, no_xattr_at(sp, 1, 1), REAL(llistxattr)(path, l, n));
}
