/*
 * LD_PRELOAD shim, vector IO: readv, writev, preadv, pwritev, preadv2,
 * pwritev2 and the *64 names glibc exports for them.  A Strata fd must never
 * reach glibc here: its kernel fd is an O_PATH descriptor, where every read
 * and write fails with EBADF (libzio turns a tracked pwrite into pwritev).
 * Each write call is one atomic log transaction (libfs_write.c).
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <sys/uio.h>

/* preadv/pwritev take no "current position" offset: -1 is just negative */
static int explicit_off(int64_t off)
{
    if (off < 0) {
        errno = EINVAL;
        return 0;
    }
    return 1;
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    return strata_is_fd(fd) ? strata_readv(fd, iov, cnt) : REAL(readv)(fd, iov, cnt);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    return strata_is_fd(fd) ? strata_writev(fd, iov, cnt) : REAL(writev)(fd, iov, cnt);
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (!strata_is_fd(fd))
        return REAL(preadv)(fd, iov, cnt, off);
    return explicit_off(off) ? strata_preadv2(fd, iov, cnt, off, 0) : -1;
}

ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    if (!strata_is_fd(fd))
        return REAL(preadv64)(fd, iov, cnt, off);
    return explicit_off(off) ? strata_preadv2(fd, iov, cnt, off, 0) : -1;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (!strata_is_fd(fd))
        return REAL(pwritev)(fd, iov, cnt, off);
    return explicit_off(off) ? strata_pwritev2(fd, iov, cnt, off, 0) : -1;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    if (!strata_is_fd(fd))
        return REAL(pwritev64)(fd, iov, cnt, off);
    return explicit_off(off) ? strata_pwritev2(fd, iov, cnt, off, 0) : -1;
}

/* v2: offset -1 means the file position (which then advances) */
ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return strata_is_fd(fd) ? strata_preadv2(fd, iov, cnt, off, flags) : REAL(preadv2)(fd, iov, cnt, off, flags);
}

ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
    return strata_is_fd(fd) ? strata_preadv2(fd, iov, cnt, off, flags)
                            : REAL(preadv64v2)(fd, iov, cnt, off, flags);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return strata_is_fd(fd) ? strata_pwritev2(fd, iov, cnt, off, flags)
                            : REAL(pwritev2)(fd, iov, cnt, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
    return strata_is_fd(fd) ? strata_pwritev2(fd, iov, cnt, off, flags)
                            : REAL(pwritev64v2)(fd, iov, cnt, off, flags);
}
