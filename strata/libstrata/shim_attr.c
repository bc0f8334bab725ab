/*
 * LD_PRELOAD shim: owner and times (chown family, utime family).  The l*
 * variants and AT_SYMLINK_NOFOLLOW act on a final symbolic link itself.
 * Times are kept in seconds (atime follows mtime); UTIME_OMIT on the mtime
 * leaves it.
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <utime.h>

/* glibc declares these paths nonnull, but the kernel accepts NULL with a
 * dirfd (utimensat(fd, NULL, ...)): programs do pass it. */
#pragma GCC diagnostic ignored "-Wnonnull-compare"

int chown(const char *path, uid_t u, gid_t g) { ROUTE_OR(path, strata_chown(sp, -1, u, g), REAL(chown)(path, u, g)); }
int lchown(const char *path, uid_t u, gid_t g) { ROUTE_OR(path, strata_lchown(sp, u, g), REAL(lchown)(path, u, g)); }
int fchown(int fd, uid_t u, gid_t g) { return strata_is_fd(fd) ? strata_chown(NULL, fd, u, g) : REAL(fchown)(fd, u, g); }

int fchownat(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    if ((flags & AT_EMPTY_PATH) && path && !path[0] && strata_is_fd(dirfd))
        return strata_chown(NULL, dirfd, u, g);
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    if (r > 0)
        return flags & AT_SYMLINK_NOFOLLOW ? strata_lchown(p, u, g) : strata_chown(p, -1, u, g);
    return r < 0 ? -1 : REAL(fchownat)(dirfd, path, u, g, flags);
}

/* times[1] is the mtime: NULL or UTIME_NOW -> now (write access will do),
 * UTIME_OMIT -> unchanged, else an explicit time (ownership needed). */
static int utime_at(const char *p, int fd, int64_t mtime, int explicit_time, int nofollow)
{
    return nofollow && p ? strata_lutime(p, mtime, explicit_time) : strata_utime(p, fd, mtime, explicit_time);
}

static int set_times_at(const char *p, int fd, const struct timespec t[2], int nofollow)
{
    if (t == NULL || t[1].tv_nsec == UTIME_NOW)
        return utime_at(p, fd, -1, t != NULL && t[0].tv_nsec != UTIME_NOW && t[0].tv_nsec != UTIME_OMIT, nofollow);
    if (t[1].tv_nsec == UTIME_OMIT) {
        struct stat st; /* still report a missing file or bad fd */
        return fd >= 0 ? strata_fstat(fd, &st) : nofollow ? strata_lstat(p, &st) : strata_stat(p, &st);
    }
    if (t[1].tv_nsec < 0 || t[1].tv_nsec >= 1000000000) {
        errno = EINVAL;
        return -1;
    }
    return utime_at(p, fd, t[1].tv_sec, 1, nofollow);
}

static int set_times(const char *p, int fd, const struct timespec t[2]) { return set_times_at(p, fd, t, 0); }

int utimensat(int dirfd, const char *path, const struct timespec t[2], int flags)
{
    if (path == NULL && strata_is_fd(dirfd))
        return set_times(NULL, dirfd, t); /* glibc's futimens */
    if ((flags & AT_EMPTY_PATH) && path && !path[0] && strata_is_fd(dirfd))
        return set_times(NULL, dirfd, t);
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r < 0 ? -1 : r ? set_times_at(p, -1, t, flags & AT_SYMLINK_NOFOLLOW) : REAL(utimensat)(dirfd, path, t, flags);
}

int futimens(int fd, const struct timespec t[2])
{
    return strata_is_fd(fd) ? set_times(NULL, fd, t) : REAL(futimens)(fd, t);
}

static const struct timespec *from_timeval(const struct timeval tv[2], struct timespec ts[2])
{
    if (tv == NULL)
        return NULL;
    for (int i = 0; i < 2; i++)
        ts[i] = (struct timespec){.tv_sec = tv[i].tv_sec, .tv_nsec = tv[i].tv_usec * 1000};
    return ts;
}

int utimes(const char *path, const struct timeval tv[2])
{
    struct timespec ts[2];
    ROUTE_OR(path, set_times(sp, -1, from_timeval(tv, ts)), REAL(utimes)(path, tv));
}

int lutimes(const char *path, const struct timeval tv[2])
{
    struct timespec ts[2];
    ROUTE_OR(path, set_times_at(sp, -1, from_timeval(tv, ts), 1), REAL(lutimes)(path, tv));
}

int futimes(int fd, const struct timeval tv[2])
{
    struct timespec ts[2];
    return strata_is_fd(fd) ? set_times(NULL, fd, from_timeval(tv, ts)) : REAL(futimes)(fd, tv);
}

int utime(const char *path, const struct utimbuf *b)
{
    struct timespec ts[2];
    if (b) {
        ts[0] = (struct timespec){.tv_sec = b->actime};
        ts[1] = (struct timespec){.tv_sec = b->modtime};
    }
    ROUTE_OR(path, set_times(sp, -1, b ? ts : NULL), REAL(utime)(path, b));
}

/* ---- extended attributes by fd, and setting them: Strata files have none
 * and take none (ENOTSUP, which cp and tar read as "no ACL support" and
 * fall back to the mode bits) ---- */

static int fd_exists(int fd)
{
    struct stat st;
    return strata_fstat(fd, &st) == 0;
}

static int path_exists(const char *p)
{
    struct stat st;
    return strata_stat(p, &st) == 0;
}

static int link_exists(const char *p) /* the l* variants: a final link itself */
{
    struct stat st;
    return strata_lstat(p, &st) == 0;
}

#define NO_XATTR(ok, err) ((ok) ? (errno = (err), -1) : -1)

ssize_t fgetxattr(int fd, const char *name, void *v, size_t n)
{
    return strata_is_fd(fd) ? NO_XATTR(fd_exists(fd), ENODATA) : REAL(fgetxattr)(fd, name, v, n);
}
ssize_t flistxattr(int fd, char *l, size_t n)
{
    return strata_is_fd(fd) ? (fd_exists(fd) ? 0 : -1) : REAL(flistxattr)(fd, l, n);
}
int fsetxattr(int fd, const char *name, const void *v, size_t n, int flags)
{
    return strata_is_fd(fd) ? NO_XATTR(fd_exists(fd), ENOTSUP) : REAL(fsetxattr)(fd, name, v, n, flags);
}
int fremovexattr(int fd, const char *name)
{
    return strata_is_fd(fd) ? NO_XATTR(fd_exists(fd), ENODATA) : REAL(fremovexattr)(fd, name);
}
int setxattr(const char *path, const char *name, const void *v, size_t n, int flags)
{
    ROUTE_OR(path, NO_XATTR(path_exists(sp), ENOTSUP), REAL(setxattr)(path, name, v, n, flags));
}
int lsetxattr(const char *path, const char *name, const void *v, size_t n, int flags)
{
    ROUTE_OR(path, NO_XATTR(link_exists(sp), ENOTSUP), REAL(lsetxattr)(path, name, v, n, flags));
}
int removexattr(const char *path, const char *name)
{
    ROUTE_OR(path, NO_XATTR(path_exists(sp), ENODATA), REAL(removexattr)(path, name));
}
int lremovexattr(const char *path, const char *name)
{
    ROUTE_OR(path, NO_XATTR(link_exists(sp), ENODATA), REAL(lremovexattr)(path, name));
}
