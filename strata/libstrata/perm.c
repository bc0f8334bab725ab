/*
 * Permission checks (POSIX): owner, then group (primary or supplementary),
 * then other bits; root passes everything but execute of a file without any
 * execute bit.  Path walks need search (x) on each directory (dir.c);
 * creating or removing a name needs write and search on the directory, and
 * in a sticky directory only the owner of the name or of the directory may
 * remove or replace it (libfs.c, libfs_ns.c).
 */
#include "strata_internal.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

int perm_in_group(gid_t gid, int real)
{
    if (gid == (real ? getgid() : getegid()))
        return 1;
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

int perm_check(const struct strata_inode *in, int want, int real)
{
    uid_t uid = real ? getuid() : geteuid();
    uint32_t mode = in->mode, have;
    if (uid == 0) {
        if (!(want & X_OK) || S_ISDIR(mode) || (mode & 0111))
            return 0;
        errno = EACCES;
        return -1;
    }
    if (in->uid == uid)
        have = (mode >> 6) & 7;
    else if (perm_in_group(in->gid, real))
        have = (mode >> 3) & 7;
    else
        have = mode & 7;
    if ((have & (uint32_t)want) == (uint32_t)want)
        return 0;
    errno = EACCES;
    return -1;
}

int perm_sticky(const struct strata_inode *dir, const struct strata_inode *victim)
{
    uid_t uid = geteuid();
    if (!(dir->mode & S_ISVTX) || uid == 0 || victim->uid == uid || dir->uid == uid)
        return 0;
    errno = EPERM;
    return -1;
}

int perm_owner(const struct strata_inode *in)
{
    uid_t uid = geteuid();
    if (uid == 0 || in->uid == uid)
        return 0;
    errno = EPERM;
    return -1;
}
