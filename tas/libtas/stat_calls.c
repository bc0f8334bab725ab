/*
 * The stat family on TAS sockets.  Their fd numbers are reserved with an
 * O_PATH descriptor of /dev/null, which fstat would report as a character
 * device; callers that decide by the file type (libzio substitutes
 * originals only on writes to sockets and regular files) must see a
 * socket, as on Linux: S_IFSOCK with mode 0777, size 0.
 *
 * _FILE_OFFSET_BITS is dropped so that fstat/fstat64 (and fstatat/fstatat64)
 * are two distinct symbols here, as glibc exports them.
 */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "interpose.h"

#define SOCK_MODE (S_IFSOCK | 0777)

static int empty_path(const char *path, int flags)
{
    return (flags & AT_EMPTY_PATH) && path != NULL && path[0] == '\0';
}

#define AS_SOCKET(st) do { \
        (st)->st_mode = SOCK_MODE; \
        (st)->st_size = 0; \
        (st)->st_blocks = 0; \
        (st)->st_blksize = 4096; \
        (st)->st_nlink = 1; \
    } while (0)

int fstat(int fd, struct stat *st)
{
    int r = REAL(fstat)(fd, st);
    if (r == 0 && lt_sock_of(fd) != NULL)
        AS_SOCKET(st);
    return r;
}

int fstat64(int fd, struct stat64 *st)
{
    int r = REAL(fstat64)(fd, st);
    if (r == 0 && lt_sock_of(fd) != NULL)
        AS_SOCKET(st);
    return r;
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    int r = REAL(fstatat)(dirfd, path, st, flags);
    if (r == 0 && empty_path(path, flags) && lt_sock_of(dirfd) != NULL)
        AS_SOCKET(st);
    return r;
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    int r = REAL(fstatat64)(dirfd, path, st, flags);
    if (r == 0 && empty_path(path, flags) && lt_sock_of(dirfd) != NULL)
        AS_SOCKET(st);
    return r;
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
    int r = REAL(statx)(dirfd, path, flags, mask, stx);
    if (r == 0 && empty_path(path, flags) && lt_sock_of(dirfd) != NULL) {
        stx->stx_mode = SOCK_MODE;
        stx->stx_size = 0;
        stx->stx_blocks = 0;
        stx->stx_blksize = 4096;
        stx->stx_nlink = 1;
        stx->stx_mask |= STATX_TYPE | STATX_MODE;
    }
    return r;
}
