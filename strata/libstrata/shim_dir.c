/*
 * opendir/readdir over Strata: a Strata DIR is our own structure holding a
 * snapshot of the directory's entries (plus "." and ".."), recognised by a
 * magic word; any other DIR goes to libc.
 */
#include "shim.h"
#include "strata_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SDIR_MAGIC 0x53444952u

struct sdir {
    uint32_t magic;
    int fd;                  /* reserved fd, so dirfd() works */
    int n, pos;
    struct strata_dirent_out *ents;
    struct dirent64 out;
};

/* Strata DIRs are tracked so a libc DIR is never dereferenced as ours. */
#define MAX_SDIRS 256
static struct sdir *sdirs[MAX_SDIRS];
static pthread_mutex_t sdir_mu = PTHREAD_MUTEX_INITIALIZER;

static struct sdir *as_sdir(void *d)
{
    struct sdir *r = NULL;
    pthread_mutex_lock(&sdir_mu);
    for (int i = 0; i < MAX_SDIRS && !r; i++)
        if (sdirs[i] == d)
            r = d;
    pthread_mutex_unlock(&sdir_mu);
    return r;
}

static DIR *sdir_open_fd(int fd)
{
    const char *path = strata_fd_path(fd);
    struct sdir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    int n = strata_listdir(path, &d->ents);
    if (n < 0) {
        free(d);
        return NULL;
    }
    d->magic = SDIR_MAGIC;
    d->fd = fd;
    d->n = n;
    pthread_mutex_lock(&sdir_mu);
    int slot = -1;
    for (int i = 0; i < MAX_SDIRS && slot < 0; i++)
        if (sdirs[i] == NULL)
            sdirs[slot = i] = d;
    pthread_mutex_unlock(&sdir_mu);
    if (slot < 0) {
        free(d->ents);
        free(d);
        errno = EMFILE;
        return NULL;
    }
    return (DIR *)d;
}

DIR *opendir(const char *path)
{
    char p[PATH_MAX];
    int r = shim_route(path, p);
    if (r <= 0)
        return r < 0 ? NULL : REAL(opendir)(path);
    int fd = strata_open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    DIR *d = sdir_open_fd(fd);
    if (d == NULL)
        strata_close(fd);
    return d;
}

DIR *fdopendir(int fd)
{
    return strata_is_fd(fd) ? sdir_open_fd(fd) : REAL(fdopendir)(fd);
}

static struct dirent64 *sdir_next(struct sdir *d)
{
    if (d->pos >= d->n + 2)
        return NULL;
    int i = d->pos++;
    memset(&d->out, 0, sizeof(d->out));
    if (i < 2) {
        strcpy(d->out.d_name, i == 0 ? "." : "..");
        d->out.d_type = DT_DIR;
        d->out.d_ino = 1;
    } else {
        snprintf(d->out.d_name, sizeof(d->out.d_name), "%s", d->ents[i - 2].name);
        d->out.d_type = d->ents[i - 2].type;
        d->out.d_ino = d->ents[i - 2].ino;
    }
    d->out.d_off = d->pos;
    d->out.d_reclen = sizeof(d->out);
    return &d->out;
}

struct dirent *readdir(DIR *dir)
{
    struct sdir *d = as_sdir(dir);
    return d ? (struct dirent *)sdir_next(d) : REAL(readdir)(dir);
}

struct dirent64 *readdir64(DIR *dir)
{
    struct sdir *d = as_sdir(dir);
    return d ? sdir_next(d) : REAL(readdir64)(dir);
}

void rewinddir(DIR *dir)
{
    struct sdir *d = as_sdir(dir);
    if (d)
        d->pos = 0;
    else
        REAL(rewinddir)(dir);
}

int dirfd(DIR *dir)
{
    struct sdir *d = as_sdir(dir);
    return d ? d->fd : REAL(dirfd)(dir);
}

int closedir(DIR *dir)
{
    struct sdir *d = as_sdir(dir);
    if (d == NULL)
        return REAL(closedir)(dir);
    pthread_mutex_lock(&sdir_mu);
    for (int i = 0; i < MAX_SDIRS; i++)
        if (sdirs[i] == d)
            sdirs[i] = NULL;
    pthread_mutex_unlock(&sdir_mu);
    int r = strata_close(d->fd);
    free(d->ents);
    free(d);
    return r;
}
