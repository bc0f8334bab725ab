/*
 * stdio over Strata.  glibc's fopen opens files with an internal call that
 * LD_PRELOAD cannot see, so fopen/fopen64/fdopen are interposed and build a
 * FILE with fopencookie over a Strata fd; fileno maps such a FILE back to
 * its fd (redis fsyncs fileno(fp) after writing its RDB).
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_COOKIE_FILES 256
static struct {
    FILE *fp;
    int fd;
} files[MAX_COOKIE_FILES];
static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t c_read(void *c, char *buf, size_t n) { return strata_read((int)(intptr_t)c, buf, n); }

static ssize_t c_write(void *c, const char *buf, size_t n)
{
    ssize_t r = strata_write((int)(intptr_t)c, buf, n);
    return r < 0 ? 0 : r; /* fopencookie: 0 reports an error */
}

static int c_seek(void *c, off64_t *off, int whence)
{
    int64_t r = strata_lseek((int)(intptr_t)c, *off, whence);
    if (r < 0)
        return -1;
    *off = r;
    return 0;
}

static int c_close(void *c)
{
    int fd = (int)(intptr_t)c;
    pthread_mutex_lock(&files_mu);
    for (int i = 0; i < MAX_COOKIE_FILES; i++)
        if (files[i].fp && files[i].fd == fd) {
            files[i].fp = NULL;
            break;
        }
    pthread_mutex_unlock(&files_mu);
    return strata_close(fd);
}

/* Remember fp's fd for fileno. */
static void remember(FILE *fp, int fd)
{
    pthread_mutex_lock(&files_mu);
    for (int i = 0; i < MAX_COOKIE_FILES; i++)
        if (files[i].fp == NULL) {
            files[i].fp = fp;
            files[i].fd = fd;
            break;
        }
    pthread_mutex_unlock(&files_mu);
}

static FILE *wrap(int fd, const char *mode)
{
    cookie_io_functions_t io = {.read = c_read, .write = c_write, .seek = c_seek, .close = c_close};
    FILE *fp = fopencookie((void *)(intptr_t)fd, mode, io);
    if (fp == NULL)
        return NULL;
    remember(fp, fd);
    return fp;
}

static int mode_flags(const char *mode)
{
    int flags;
    switch (mode[0]) {
    case 'r': flags = 0; break;
    case 'w': flags = O_CREAT | O_TRUNC; break;
    case 'a': flags = O_CREAT | O_APPEND; break;
    default: return -1;
    }
    int plus = strchr(mode, '+') != NULL;
    flags |= plus ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;
    if (strchr(mode, 'x'))
        flags |= O_EXCL;
    if (strchr(mode, 'e'))
        flags |= O_CLOEXEC;
    return flags;
}

static FILE *strata_fopen(const char *p, const char *mode)
{
    int flags = mode_flags(mode);
    if (flags < 0) {
        errno = EINVAL;
        return NULL;
    }
    int fd = strata_open(p, flags, 0666);
    if (fd < 0)
        return NULL;
    FILE *fp = wrap(fd, mode);
    if (fp == NULL)
        strata_close(fd);
    return fp;
}

FILE *fopen(const char *path, const char *mode)
{
    char p[PATH_MAX];
    int r = shim_route_follow(path, p);
    return r < 0 ? NULL : r ? strata_fopen(p, mode) : REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    char p[PATH_MAX];
    int r = shim_route_follow(path, p);
    return r < 0 ? NULL : r ? strata_fopen(p, mode) : REAL(fopen64)(path, mode);
}

FILE *fdopen(int fd, const char *mode)
{
    return strata_is_fd(fd) ? wrap(fd, mode) : REAL(fdopen)(fd, mode);
}

int fileno(FILE *fp)
{
    pthread_mutex_lock(&files_mu);
    for (int i = 0; i < MAX_COOKIE_FILES; i++)
        if (files[i].fp == fp) {
            int fd = files[i].fd;
            pthread_mutex_unlock(&files_mu);
            return fd;
        }
    pthread_mutex_unlock(&files_mu);
    return REAL(fileno)(fp);
}

/* ---- stdin, stdout, stderr over Strata fds ----
 *
 * glibc's standard streams write and read with internal calls LD_PRELOAD
 * cannot see.  When fd 0, 1 or 2 is a Strata fd -- inherited over exec (a
 * shell redirection), or made one by dup2 in this program (a shell running a
 * builtin with a redirection) -- the stream is replaced by a cookie FILE that
 * sends each transfer to Strata or to the kernel, whichever owns the fd at
 * that moment. */

static ssize_t std_read(void *c, char *buf, size_t n)
{
    int fd = (int)(intptr_t)c;
    return strata_is_fd(fd) ? strata_read(fd, buf, n) : REAL(read)(fd, buf, n);
}

static ssize_t std_write(void *c, const char *buf, size_t n)
{
    int fd = (int)(intptr_t)c;
    size_t done = 0;
    while (done < n) {
        ssize_t r = strata_is_fd(fd) ? strata_write(fd, buf + done, n - done) : REAL(write)(fd, buf + done, n - done);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        done += (size_t)r;
    }
    return (ssize_t)done; /* short: fopencookie reports the error */
}

static int std_seek(void *c, off64_t *off, int whence)
{
    int fd = (int)(intptr_t)c;
    int64_t r = strata_is_fd(fd) ? strata_lseek(fd, *off, whence) : REAL(lseek64)(fd, *off, whence);
    if (r < 0)
        return -1;
    *off = r;
    return 0;
}

static int std_close(void *c) { return close((int)(intptr_t)c); }

static FILE *std_installed[3];

void shim_std_redirect(int fd, int at_start)
{
    if (fd < 0 || fd > 2 || std_installed[fd])
        return;
    FILE **slot = fd == 0 ? &stdin : fd == 1 ? &stdout : &stderr;
    cookie_io_functions_t io = {.read = std_read, .write = std_write, .seek = std_seek, .close = std_close};
    static const char *const modes[3] = {"r", "w", "w"};
    FILE *fp = fopencookie((void *)(intptr_t)fd, modes[fd], io);
    if (fp == NULL)
        return;
    /* glibc's choices: files fully buffered, stderr unbuffered; a stream
     * switched while the program runs keeps line buffering for its terminal */
    if (fd == 2)
        setvbuf(fp, NULL, _IONBF, 0);
    else if (fd == 1 && !at_start)
        setvbuf(fp, NULL, _IOLBF, 0);
    fflush(*slot);
    *slot = fp;
    std_installed[fd] = fp;
    remember(fp, fd);
}

/* After libfs_init (priority 101) has adopted the inherited fds. */
__attribute__((constructor(102))) static void std_streams_init(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (strata_is_fd(fd))
            shim_std_redirect(fd, 1);
}
