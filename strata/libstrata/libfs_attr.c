/*
 * Metadata: mode, owner and modification time.  Each change is one SETATTR
 * entry saying which fields it sets (strata_layout.h), logged and applied at
 * once like a namespace op.  Rules as Linux: chmod by the owner (or root);
 * chown of the owner by root only, of the group by the owner to one of its
 * groups; chown clears set-user-ID and set-group-ID on regular files;
 * setting an explicit time needs ownership, setting "now" write access.
 * Strata keeps seconds; atime is reported as the mtime.
 */
#include "strata_internal.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int setattr(uint32_t ino, uint32_t what, uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime)
{
    struct strata_entry h = {.kind = STRATA_E_SETATTR, .ino = ino, .gen = G.inodes[ino].gen, .ino2 = what,
                             .len = mode & 07777, .off = (uint64_t)uid << 32 | gid,
                             .gen2 = (uint32_t)mtime, .mtime_s = (uint32_t)time(NULL)};
    return ns_commit(&h, "", 0, NULL, 0);
}

/* Resolve the target (path, or fd when path is NULL) under the pool lock;
 * nofollow: a final symbolic link is the target itself (lchown, lutimes). */
static int target(const char *path, int fd, int nofollow, uint32_t *ino)
{
    if (path)
        return nofollow ? path_resolve_nofollow(path, ino) : path_resolve(path, ino);
    struct sfile *f = sfile_get(fd);
    if (f == NULL || !ino_alive(f->ino, f->gen)) {
        errno = EBADF;
        return -1;
    }
    *ino = f->ino;
    return 0;
}

enum { OP_MODE, OP_OWNER, OP_TIME, OP_NOFOLLOW = 16 };

static int do_attr(const char *path, int fd, int op, uint32_t mode, uid_t uid, gid_t gid, int64_t mtime,
                   int explicit_time)
{
    uint32_t ino;
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    int nofollow = op & OP_NOFOLLOW;
    op &= ~OP_NOFOLLOW;
    if (target(path, fd, nofollow, &ino) != 0)
        goto out;
    struct strata_inode *in = &G.inodes[ino];
    uid_t me = geteuid();
    if (op == OP_MODE) {
        if (perm_owner(in) == 0)
            rc = setattr(ino, STRATA_ATTR_MODE, mode, 0, 0, 0);
    } else if (op == OP_OWNER) {
        uint32_t nu = uid == (uid_t)-1 ? in->uid : (uint32_t)uid, ng = gid == (gid_t)-1 ? in->gid : (uint32_t)gid;
        if (me != 0 && (nu != in->uid || in->uid != me || (ng != in->gid && !perm_in_group(ng, 0)))) {
            errno = EPERM;
            goto out;
        }
        uint32_t m = in->mode & 07777;
        if (S_ISREG(in->mode)) /* Linux drops set-id bits on chown (setgid only with group exec) */
            m &= ~(uint32_t)(S_ISUID | ((m & S_IXGRP) ? S_ISGID : 0));
        rc = setattr(ino, STRATA_ATTR_OWNER | STRATA_ATTR_MODE, m, nu, ng, 0);
    } else {
        if (explicit_time ? perm_owner(in) != 0 : (me != 0 && in->uid != me && perm_check(in, W_OK, 0) != 0))
            goto out;
        /* our writes before it must not stamp the file when digested later */
        if (G.slot >= 0 && digest_slot(G.slot) < 0)
            goto out;
        rc = setattr(ino, STRATA_ATTR_MTIME, 0, 0, 0, mtime < 0 ? (int64_t)time(NULL) : mtime);
    }
out:
    strata_pool_unlock();
    return rc;
}

int strata_chmod(const char *path, unsigned int mode) { return LOCKED(do_attr(path, -1, OP_MODE, mode, 0, 0, 0, 0)); }
int strata_fchmod(int fd, unsigned int mode) { return LOCKED(do_attr(NULL, fd, OP_MODE, mode, 0, 0, 0, 0)); }

int strata_chown(const char *path, int fd, uid_t uid, gid_t gid)
{
    return LOCKED(do_attr(fd < 0 ? path : NULL, fd, OP_OWNER, 0, uid, gid, 0, 0));
}

int strata_utime(const char *path, int fd, int64_t mtime, int explicit_time)
{
    return LOCKED(do_attr(fd < 0 ? path : NULL, fd, OP_TIME, 0, 0, 0, mtime, explicit_time));
}

int strata_lchown(const char *path, uid_t uid, gid_t gid)
{
    return LOCKED(do_attr(path, -1, OP_OWNER | OP_NOFOLLOW, 0, uid, gid, 0, 0));
}

int strata_lutime(const char *path, int64_t mtime, int explicit_time)
{
    return LOCKED(do_attr(path, -1, OP_TIME | OP_NOFOLLOW, 0, 0, 0, mtime, explicit_time));
}
