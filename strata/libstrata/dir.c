/*
 * Directory entries: one open-addressing hash table keyed by (parent inode,
 * name), linear probing.  A removed entry becomes a tombstone unless the next
 * probe slot is empty, in which case the run is shortened instead, so
 * create/unlink churn (sqlite journals) does not fill the table with
 * tombstones.  Path resolution walks it component by component.
 */
#include "strata_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "kb/env.h"

enum { D_EMPTY = 0, D_USED = 1, D_DEAD = 2 };

static uint32_t dhash(uint32_t parent, const char *name, size_t nlen)
{
    uint64_t h = 1469598103934665603ULL ^ parent;
    for (size_t i = 0; i < nlen; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return (uint32_t)(h % G.sb->ndirents);
}

struct strata_dirent *dir_lookup(uint32_t parent, const char *name, size_t nlen)
{
    uint32_t n = G.sb->ndirents, i = dhash(parent, name, nlen);
    for (uint32_t k = 0; k < n; k++, i = (i + 1) % n) {
        struct strata_dirent *d = &G.dirents[i];
        if (d->state == D_EMPTY)
            return NULL;
        if (d->state == D_USED && d->parent == parent && d->name_len == nlen &&
            memcmp(d->name, name, nlen) == 0)
            return d;
    }
    return NULL;
}

int dir_insert(uint32_t parent, const char *name, size_t nlen, uint32_t ino)
{
    uint32_t n = G.sb->ndirents, i = dhash(parent, name, nlen);
    for (uint32_t k = 0; k < n; k++, i = (i + 1) % n) {
        struct strata_dirent *d = &G.dirents[i];
        if (d->state == D_USED)
            continue;
        d->parent = parent;
        d->ino = ino;
        d->name_len = (uint16_t)nlen;
        memcpy(d->name, name, nlen);
        d->name[nlen] = 0;
        strata_persist(d, sizeof(*d));
        d->state = D_USED; /* the entry becomes visible only once complete */
        strata_persist(&d->state, sizeof(d->state));
        return 0;
    }
    errno = ENOSPC;
    return -1;
}

void dir_remove(struct strata_dirent *d)
{
    uint32_t n = G.sb->ndirents, i = (uint32_t)(d - G.dirents);
    d->state = G.dirents[(i + 1) % n].state == D_EMPTY ? D_EMPTY : D_DEAD;
    strata_persist(&d->state, sizeof(d->state));
    /* walk back over tombstones that now end a run */
    while (d->state == D_EMPTY) {
        i = (i + n - 1) % n;
        d = &G.dirents[i];
        if (d->state != D_DEAD)
            break;
        d->state = D_EMPTY;
        strata_persist(&d->state, sizeof(d->state));
    }
}

int dir_is_empty(uint32_t ino)
{
    for (uint32_t i = 0; i < G.sb->ndirents; i++)
        if (G.dirents[i].state == D_USED && G.dirents[i].parent == ino)
            return 0;
    return 1;
}

#define MAX_HOPS 40 /* symbolic links followed in one walk (Linux's limit) */

static const char *mount_prefix(size_t *len)
{
    static char pre[PATH_MAX];
    static size_t n;
    if (n == 0) {
        const char *m = kb_getenv("STRATA_MOUNT");
        snprintf(pre, sizeof(pre), "%s", m && *m ? m : "/strata");
        n = strlen(pre);
        while (n > 1 && pre[n - 1] == '/')
            pre[--n] = 0;
    }
    *len = n;
    return pre;
}

int symlink_target(uint32_t ino, char *buf, size_t len)
{
    uint64_t size = G.inodes[ino].size;
    if (size == 0 || size >= len) {
        errno = EUCLEAN; /* a link without a target, or too long to be one */
        return -1;
    }
    if (shared_read(ino, 0, buf, size) != 0)
        return -1;
    buf[size] = 0;
    return (int)size;
}

/* Rewrite the walk at a symbolic link: out = target + "/" + rest.  An
 * absolute target must lie under the mount prefix (it becomes a pool path);
 * Strata cannot follow one into the kernel's file systems (EXDEV). */
static int splice_link(uint32_t ino, const char *rest, char out[PATH_MAX], int *absolute)
{
    char t[PATH_MAX];
    if (symlink_target(ino, t, sizeof(t)) < 0)
        return -1;
    const char *tp = t;
    *absolute = t[0] == '/';
    if (*absolute) {
        size_t n;
        const char *pre = mount_prefix(&n);
        if (strncmp(t, pre, n) != 0 || (t[n] != '/' && t[n] != 0)) {
            errno = EXDEV;
            return -1;
        }
        tp = t + n;
    }
    if (snprintf(out, PATH_MAX, "%s/%s", tp, rest) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* A final name that came from a link's target lives in a walk-local
 * buffer: hand it out from here (two at a time: rename). */
static const char *keep_name(const char *name, size_t len)
{
    static char names[2][STRATA_NAME_MAX + 1];
    static int next;
    char *n = names[next];
    next ^= 1;
    memcpy(n, name, len);
    n[len] = 0;
    return n;
}

/* Walk path components, following symbolic links in the middle of the path
 * and, with follow, at its end (a trailing slash follows too); stops before
 * the last component when last != NULL.  canon, when given, receives the
 * pool path of the result with every link resolved (realpath). */
static int walk(const char *path, uint32_t *ino, const char **last, size_t *lastlen, int follow, char *canon)
{
    if (path == NULL || path[0] != '/') {
        errno = ENOENT;
        return -1;
    }
    uint32_t cur = STRATA_ROOT_INO;
    const char *p = path;
    char buf[2][PATH_MAX];
    int which = 0, hops = 0, abs_link;
    size_t cl = 0; /* length of canon */
    int root = geteuid() == 0; /* search permission is checked for others */
    for (;;) {
        while (*p == '/')
            p++;
        if (*p == 0)
            break;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len > STRATA_NAME_MAX) {
            errno = ENAMETOOLONG;
            return -1;
        }
        const char *q = e;
        while (*q == '/')
            q++;
        if (last && *q == 0) {
            if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
                errno = EINVAL;
                return -1;
            }
            *last = hops ? keep_name(p, len) : p;
            *lastlen = len;
            *ino = cur;
            return 0;
        }
        if (!S_ISDIR(G.inodes[cur].mode)) {
            errno = ENOTDIR;
            return -1;
        }
        if (!root && perm_check(&G.inodes[cur], X_OK, 0) != 0)
            return -1;
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            cur = G.inodes[cur].parent;
            while (canon && cl > 0 && canon[--cl] != '/')
                ;
        } else {
            struct strata_dirent *d = dir_lookup(cur, p, len);
            if (d == NULL) {
                errno = ENOENT;
                return -1;
            }
            if (d->ino < G.sb->ninodes && S_ISLNK(G.inodes[d->ino].mode) && (*q != 0 || follow || *e == '/')) {
                if (++hops > MAX_HOPS) {
                    errno = ELOOP;
                    return -1;
                }
                if (splice_link(d->ino, q, buf[which], &abs_link) != 0)
                    return -1;
                p = buf[which];
                which ^= 1;
                if (abs_link) {
                    cur = STRATA_ROOT_INO;
                    cl = 0;
                }
                continue;
            }
            cur = d->ino;
            if (canon && cl + 1 + len < PATH_MAX) {
                canon[cl++] = '/';
                memcpy(canon + cl, p, len);
                cl += len;
            }
        }
        if (cur == 0 || cur >= G.sb->ninodes || G.inodes[cur].mode == 0) {
            errno = EUCLEAN; /* a dirent or parent link names no inode */
            return -1;
        }
        p = e;
    }
    if (last) { /* path was "/" */
        errno = EBUSY;
        return -1;
    }
    if (canon) {
        if (cl == 0)
            canon[cl++] = '/';
        canon[cl] = 0;
    }
    *ino = cur;
    return 0;
}

static int resolve(const char *path, uint32_t *ino, int follow, char *canon)
{
    if (walk(path, ino, NULL, NULL, follow, canon) != 0)
        return -1;
    /* a trailing slash requires a directory */
    size_t l = strlen(path);
    if (l > 1 && path[l - 1] == '/' && !S_ISDIR(G.inodes[*ino].mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int path_resolve(const char *path, uint32_t *ino) { return resolve(path, ino, 1, NULL); }
int path_resolve_nofollow(const char *path, uint32_t *ino) { return resolve(path, ino, 0, NULL); }
int path_canonical(const char *path, char out[PATH_MAX])
{
    uint32_t ino;
    return resolve(path, &ino, 1, out);
}

int path_parent(const char *path, uint32_t *parent, const char **name, size_t *nlen)
{
    if (walk(path, parent, name, nlen, 0, NULL) != 0)
        return -1;
    if (!S_ISDIR(G.inodes[*parent].mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* The pool path of directory ino now, from its parent links and the entry
 * naming it in each parent (a scan of the table per level: only when a
 * directory descriptor's remembered path no longer names it).  -1 with
 * ENOENT when it or an ancestor has no name (removed). */
int dir_path_of(uint32_t ino, char out[PATH_MAX])
{
    char tmp[PATH_MAX];
    size_t at = PATH_MAX - 1;
    tmp[at] = 0;
    for (int depth = 0; ino != STRATA_ROOT_INO; depth++) {
        if (ino == 0 || ino >= G.sb->ninodes || !S_ISDIR(G.inodes[ino].mode) || depth > PATH_MAX / 2) {
            errno = ENOENT;
            return -1;
        }
        uint32_t parent = G.inodes[ino].parent;
        const struct strata_dirent *d = NULL;
        for (uint32_t i = 0; i < G.sb->ndirents && d == NULL; i++)
            if (G.dirents[i].state == D_USED && G.dirents[i].ino == ino && G.dirents[i].parent == parent)
                d = &G.dirents[i];
        if (d == NULL || d->name_len > STRATA_NAME_MAX) {
            errno = ENOENT;
            return -1;
        }
        if (at < (size_t)d->name_len + 1 + 1) {
            errno = ENAMETOOLONG;
            return -1;
        }
        at -= d->name_len;
        memcpy(tmp + at, d->name, d->name_len);
        tmp[--at] = '/';
        ino = parent;
    }
    if (at == PATH_MAX - 1)
        tmp[--at] = '/';
    memcpy(out, tmp + at, PATH_MAX - at);
    return 0;
}
