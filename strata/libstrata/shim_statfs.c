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

/* Each call and its *64 twin (the same layout on LP64): Strata's numbers
 * for a Strata path or fd, else the next definition's answer. */
#define BY_PATH(name, type, fill_fn)                                           \
    int name(const char *path, type *s)                                        \
    {                                                                          \
        int r = routed(path);                                                  \
        return r < 0 ? -1 : r ? fill_fn((void *)s) : REAL(name)(path, s);      \
    }
#define BY_FD(name, type, fill_fn)                                             \
    int name(int fd, type *s)                                                  \
    {                                                                          \
        return strata_is_fd(fd) ? fill_fn((void *)s) : REAL(name)(fd, s);      \
    }
BY_PATH(statfs, struct statfs, fill)
BY_PATH(statfs64, struct statfs64, fill)
BY_FD(fstatfs, struct statfs, fill)
BY_FD(fstatfs64, struct statfs64, fill)
BY_PATH(statvfs, struct statvfs, fillv)
BY_PATH(statvfs64, struct statvfs64, fillv)
BY_FD(fstatvfs, struct statvfs, fillv)
BY_FD(fstatvfs64, struct statvfs64, fillv)
