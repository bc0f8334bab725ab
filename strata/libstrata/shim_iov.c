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

/* Each call and its *64 twin (off64_t is off_t on LP64): Strata's for a
 * Strata fd, else the next definition's. */
#define AT_OFFSET(name, off_type, strata_fn)                                   \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_type off)      \
    {                                                                          \
        if (!strata_is_fd(fd))                                                 \
            return REAL(name)(fd, iov, cnt, off);                              \
        return explicit_off(off) ? strata_fn(fd, iov, cnt, off, 0) : -1;       \
    }
AT_OFFSET(preadv, off_t, strata_preadv2)
AT_OFFSET(preadv64, off64_t, strata_preadv2)
AT_OFFSET(pwritev, off_t, strata_pwritev2)
AT_OFFSET(pwritev64, off64_t, strata_pwritev2)

/* v2: offset -1 means the file position (which then advances) */
#define AT_OFFSET_V2(name, off_type, strata_fn)                                          \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_type off, int flags)     \
    {                                                                                    \
        return strata_is_fd(fd) ? strata_fn(fd, iov, cnt, off, flags)                    \
                                : REAL(name)(fd, iov, cnt, off, flags);                  \
    }
AT_OFFSET_V2(preadv2, off_t, strata_preadv2)
AT_OFFSET_V2(preadv64v2, off64_t, strata_preadv2)
AT_OFFSET_V2(pwritev2, off_t, strata_pwritev2)
AT_OFFSET_V2(pwritev64v2, off64_t, strata_pwritev2)
