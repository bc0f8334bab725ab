/*
 * LD_PRELOAD shim, kernel-side copies: sendfile, copy_file_range and splice
 * with a Strata fd on either side.  The kernel cannot move bytes to or from
 * Strata's O_PATH placeholder (EBADF), so they are done here as reads and
 * writes through a bounce buffer (one chunk at a time; offsets and file
 * positions advance by what was written, a short write ends the copy).  The
 * errno values of the cases the kernel checks first follow Linux.
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK (256u * 1024)

/* The other side goes through the global pread64/write/pwrite64, not the
 * next library's: under `kbrun` it may be a libtas socket (whose kernel fd is
 * a placeholder too), and libzio and libtas come before us. */
static ssize_t rd(int fd, void *b, size_t n, int64_t off)
{
    if (strata_is_fd(fd))
        return strata_pread(fd, b, n, off);
    return pread64(fd, b, n, off);
}

/* off < 0: at the file position (pipes, sockets, O_APPEND files) */
static ssize_t wr(int fd, const void *b, size_t n, int64_t off)
{
    if (strata_is_fd(fd))
        return off < 0 ? strata_write(fd, b, n) : strata_pwrite(fd, b, n, off);
    return off < 0 ? write(fd, b, n) : pwrite64(fd, b, n, off);
}

static int64_t pos(int fd, int64_t off, int whence)
{
    return strata_is_fd(fd) ? strata_lseek(fd, off, whence) : REAL(lseek64)(fd, off, whence);
}

static int kstat(int fd, struct stat *st)
{
    return strata_is_fd(fd) ? strata_fstat(fd, st) : (int)syscall(SYS_fstat, fd, st);
}

static int fd_flags(int fd)
{
    return strata_is_fd(fd) ? strata_fd_flags(fd) : REAL(fcntl)(fd, F_GETFL);
}

/* Copy up to n bytes from in (at *in_off, or its position) to out (at
 * *out_off, or its position when out_off is NULL). */
static ssize_t copy(int in, int64_t *in_off, int out, int64_t *out_off, size_t n)
{
    int64_t ipos = in_off ? *in_off : pos(in, 0, SEEK_CUR);
    if (ipos < 0)
        return -1;
    if (n == 0)
        return 0;
    char *buf = malloc(n < CHUNK ? n : CHUNK);
    if (buf == NULL)
        return -1;
    size_t done = 0;
    int err = 0;
    while (done < n) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        ssize_t r = rd(in, buf, k, ipos + (int64_t)done);
        if (r <= 0) {
            err = r < 0 ? errno : 0;
            break;
        }
        ssize_t w = wr(out, buf, (size_t)r, out_off ? *out_off + (int64_t)done : -1);
        if (w < 0) {
            err = errno;
            break;
        }
        done += (size_t)w;
        if (w < r || (size_t)r < k)
            break;
    }
    free(buf);
    if (done == 0 && err) {
        errno = err;
        return -1;
    }
    if (in_off)
        *in_off = ipos + (int64_t)done;
    else
        pos(in, ipos + (int64_t)done, SEEK_SET);
    if (out_off)
        *out_off += (int64_t)done;
    return (ssize_t)done;
}

static ssize_t strata_sendfile(int out, int in, int64_t *off, size_t n)
{
    int ofl = fd_flags(out), ifl = fd_flags(in);
    if (ofl < 0 || ifl < 0 || (ofl & O_ACCMODE) == O_RDONLY || (ifl & O_ACCMODE) == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    if ((ofl & O_APPEND) || (off && *off < 0)) {
        errno = EINVAL; /* Linux: sendfile does not append */
        return -1;
    }
    return copy(in, off, out, NULL, n);
}

ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    if (!strata_is_fd(out) && !strata_is_fd(in))
        return REAL(sendfile)(out, in, off, n);
    int64_t o = off ? *off : 0;
    ssize_t r = strata_sendfile(out, in, off ? &o : NULL, n);
    if (off && r >= 0)
        *off = (off_t)o;
    return r;
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
    if (!strata_is_fd(out) && !strata_is_fd(in))
        return REAL(sendfile64)(out, in, off, n);
    return strata_sendfile(out, in, off, n);
}

ssize_t copy_file_range(int in, off64_t *oi, int out, off64_t *oo, size_t n, unsigned int fl)
{
    if (!strata_is_fd(out) && !strata_is_fd(in))
        return REAL(copy_file_range)(in, oi, out, oo, n, fl);
    struct stat si, so;
    int ifl = fd_flags(in), ofl = fd_flags(out);
    if (ifl < 0 || ofl < 0 || (ifl & O_ACCMODE) == O_WRONLY || (ofl & O_ACCMODE) == O_RDONLY ||
        (ofl & O_APPEND)) {
        errno = EBADF;
        return -1;
    }
    if (fl != 0 || kstat(in, &si) != 0 || kstat(out, &so) != 0) {
        errno = fl != 0 ? EINVAL : errno;
        return -1;
    }
    if (S_ISDIR(si.st_mode) || S_ISDIR(so.st_mode)) {
        errno = EISDIR;
        return -1;
    }
    if (!S_ISREG(si.st_mode) || !S_ISREG(so.st_mode) || (oi && *oi < 0) || (oo && *oo < 0)) {
        errno = EINVAL;
        return -1;
    }
    int64_t a = oi ? *oi : pos(in, 0, SEEK_CUR), b = oo ? *oo : pos(out, 0, SEEK_CUR);
    if (si.st_dev == so.st_dev && si.st_ino == so.st_ino && a < b + (int64_t)n && b < a + (int64_t)n) {
        errno = EINVAL; /* overlapping ranges of one file */
        return -1;
    }
    if (a >= si.st_size)
        return 0;
    if ((uint64_t)(si.st_size - a) < n)
        n = (size_t)(si.st_size - a);
    ssize_t r = copy(in, oi, out, &b, n);
    if (r >= 0 && oo)
        *oo = b;
    else if (r > 0)
        pos(out, b, SEEK_SET);
    return r;
}

/* splice: one side must be a pipe; the Strata side is a file. */
ssize_t splice(int in, off64_t *oi, int out, off64_t *oo, size_t n, unsigned int fl)
{
    if (!strata_is_fd(out) && !strata_is_fd(in))
        return REAL(splice)(in, oi, out, oo, n, fl);
    struct stat si, so;
    if (kstat(in, &si) != 0 || kstat(out, &so) != 0)
        return -1;
    int pipe_in = S_ISFIFO(si.st_mode), pipe_out = S_ISFIFO(so.st_mode);
    if (!pipe_in && !pipe_out) {
        errno = EINVAL;
        return -1;
    }
    if ((pipe_in && oi) || (pipe_out && oo)) {
        errno = ESPIPE;
        return -1;
    }
    int ifl = fd_flags(in), ofl = fd_flags(out);
    if (ifl < 0 || ofl < 0 || (ifl & O_ACCMODE) == O_WRONLY || (ofl & O_ACCMODE) == O_RDONLY) {
        errno = EBADF;
        return -1;
    }
    if (n > 65536)
        n = 65536; /* at most a default pipe's worth per call, as the kernel moves */
    if (pipe_out) {
        int64_t o = oi ? *oi : 0;
        ssize_t r = copy(in, oi ? &o : NULL, out, NULL, n);
        if (r >= 0 && oi)
            *oi = o;
        return r;
    }
    /* pipe -> Strata file: what is read from the pipe is gone, so write it all */
    char *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return -1;
    ssize_t r = read(in, buf, n), w = r;
    if (r > 0) {
        w = oo ? strata_pwrite(out, buf, (size_t)r, *oo) : strata_write(out, buf, (size_t)r);
        if (w > 0 && oo)
            *oo += w;
    }
    free(buf);
    return w;
}
