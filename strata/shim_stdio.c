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

static FILE *wrap(int fd, const char *mode)
{
    cookie_io_functions_t io = {.read = c_read, .write = c_write, .seek = c_seek, .close = c_close};
    FILE *fp = fopencookie((void *)(intptr_t)fd, mode, io);
    if (fp == NULL)
        return NULL;
    pthread_mutex_lock(&files_mu);
    for (int i = 0; i < MAX_COOKIE_FILES; i++)
        if (files[i].fp == NULL) {
            files[i].fp = fp;
            files[i].fd = fd;
            break;
        }
    pthread_mutex_unlock(&files_mu);
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
    int r = shim_route(path, p);
    return r < 0 ? NULL : r ? strata_fopen(p, mode) : REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    char p[PATH_MAX];
    int r = shim_route(path, p);
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
