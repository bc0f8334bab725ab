/*
 * LD_PRELOAD shim: statfs/statvfs of Strata (df, Python's shutil.disk_usage)
 * report the pool's data capacity and free space, not the kernel's answer for
 * the placeholder fd (or ENOENT for a /strata path).
 */
#include "shim.h"
#include "strata_internal.h"

#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#define STRATA_FS_MAGIC 0x53545241 /* "STRA" */

static int fill(struct statfs *s)
{
    uint64_t blocks, bfree, bavail, files, ffree;
    if (strata_space(&blocks, &bfree, &bavail, &files, &ffree) != 0)
        return -1;
    memset(s, 0, sizeof(*s));
    s->f_type = STRATA_FS_MAGIC;
    s->f_bsize = s->f_frsize = STRATA_BLOCK;
    s->f_blocks = blocks;
    s->f_bfree = bfree;
    s->f_bavail = bavail;
    s->f_files = files;
    s->f_ffree = ffree;
    s->f_namelen = STRATA_NAME_MAX;
    return 0;
}

static int fillv(struct statvfs *v)
{
    struct statfs s;
    if (fill(&s) != 0)
        return -1;
    memset(v, 0, sizeof(*v));
    v->f_bsize = v->f_frsize = (unsigned long)s.f_bsize;
    v->f_blocks = s.f_blocks;
    v->f_bfree = s.f_bfree;
    v->f_bavail = s.f_bavail;
    v->f_files = s.f_files;
    v->f_ffree = v->f_favail = s.f_ffree;
    v->f_fsid = STRATA_FS_MAGIC;
    v->f_namemax = STRATA_NAME_MAX;
    return 0;
}

static int routed(const char *path)
{
    char p[PATH_MAX];
    struct stat st;
    int r = shim_route(path, p);
    return r <= 0 ? r : strata_stat(p, &st) == 0 ? 1 : -1;
}

int statfs(const char *path, struct statfs *s)
{
    int r = routed(path);
    return r < 0 ? -1 : r ? fill(s) : REAL(statfs)(path, s);
}
int statfs64(const char *path, struct statfs64 *s)
{
    int r = routed(path);
    return r < 0 ? -1 : r ? fill((struct statfs *)s) : REAL(statfs64)(path, s);
}
int fstatfs(int fd, struct statfs *s) { return strata_is_fd(fd) ? fill(s) : REAL(fstatfs)(fd, s); }
int fstatfs64(int fd, struct statfs64 *s)
{
    return strata_is_fd(fd) ? fill((struct statfs *)s) : REAL(fstatfs64)(fd, s);
}
int statvfs(const char *path, struct statvfs *v)
{
    int r = routed(path);
    return r < 0 ? -1 : r ? fillv(v) : REAL(statvfs)(path, v);
}
int statvfs64(const char *path, struct statvfs64 *v)
{
    int r = routed(path);
    return r < 0 ? -1 : r ? fillv((struct statvfs *)v) : REAL(statvfs64)(path, v);
}
int fstatvfs(int fd, struct statvfs *v) { return strata_is_fd(fd) ? fillv(v) : REAL(fstatvfs)(fd, v); }
int fstatvfs64(int fd, struct statvfs64 *v)
{
    return strata_is_fd(fd) ? fillv((struct statvfs *)v) : REAL(fstatvfs64)(fd, v);
}
