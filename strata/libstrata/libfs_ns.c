/*
 * LibFS namespace operations.  Each is logged like a write and then applied
 * to the shared area at once, under the pool lock, so other processes see
 * names immediately; the slot's ns_applied mark records that the entry is
 * applied.  A crash between commit and mark is repaired by re-applying the
 * entry (apply.c is idempotent).
 */
#include "strata_internal.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ns_claim(void)
{
    return log_claim_slot();
}

/* Log h (+names), apply it, mark it applied.  Pool lock held. */
int ns_commit(struct strata_entry *h, const char *n1, size_t l1, const char *n2, size_t l2)
{
    char names[STRATA_NAME_MAX + 1 + PATH_MAX]; /* a name, and a second name or a link target */
    if (l1 + l2 > sizeof(names)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(names, n1, l1);
    if (l2)
        memcpy(names + l1, n2, l2);
    h->name_len = (uint16_t)l1;
    h->name2_len = (uint16_t)l2;
    struct strata_entry *e = log_append(h, names, l1 + l2);
    if (e == NULL && errno == ENOSPC && digest_slot(G.slot) >= 0)
        e = log_append(h, names, l1 + l2);
    if (e == NULL)
        return -1;
    int rc = apply_namespace(e);
    G.slots[G.slot].ns_applied = G.tail;
    strata_persist(&G.slots[G.slot].ns_applied, sizeof(G.slots[G.slot].ns_applied));
    if (rc != 0)
        errno = ENOSPC;
    return rc;
}

/* The process umask, read once (umask() can only be read by setting it). */
static mode_t process_umask(void)
{
    static int have;
    static mode_t mask;
    if (!have) {
        mask = umask(022);
        umask(mask);
        have = 1;
    }
    return mask;
}

int ns_create(uint32_t parent, const char *name, size_t nlen, uint32_t mode, uint32_t *ino_out)
{
    return ns_create_target(parent, name, nlen, mode, NULL, 0, ino_out);
}

/* Create a name; a symbolic link carries its target as the second name. */
int ns_create_target(uint32_t parent, const char *name, size_t nlen, uint32_t mode, const char *target,
                     size_t tlen, uint32_t *ino_out)
{
    if (!S_ISLNK(mode))
        mode &= ~(uint32_t)process_umask();
    uint32_t ino = ino_alloc();
    if (ino == 0) {
        errno = ENOSPC;
        return -1;
    }
    /* the owner: the effective uid, and the parent's group if it is setgid */
    uint32_t gid = (G.inodes[parent].mode & S_ISGID) ? G.inodes[parent].gid : (uint32_t)getegid();
    struct strata_entry h = {.kind = S_ISDIR(mode) ? STRATA_E_MKDIR : STRATA_E_CREATE,
                             .ino = ino, .gen = G.inodes[ino].gen + 1, .parent = parent, .len = mode,
                             .off = (uint64_t)geteuid() << 32 | gid};
    if (ns_commit(&h, name, nlen, target, tlen) != 0)
        return -1;
    *ino_out = ino;
    return 0;
}

/* With the pool locked: path names a new entry in a directory we may write
 * (0), or -1 with errno (EEXIST also for "/", "." and ".." as the name). */
static int new_name(const char *path, uint32_t *parent, const char **name, size_t *nlen)
{
    if (path_parent(path, parent, name, nlen) != 0) {
        if (errno == EBUSY || errno == EINVAL)
            errno = EEXIST;
        return -1;
    }
    if (dir_lookup(*parent, *name, *nlen)) {
        errno = EEXIST;
        return -1;
    }
    return perm_check(&G.inodes[*parent], W_OK | X_OK, 0);
}

static int do_mkdir(const char *path, unsigned int mode)
{
    uint32_t parent, ino;
    const char *name;
    size_t nlen;
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    if (new_name(path, &parent, &name, &nlen) == 0)
        rc = ns_create(parent, name, nlen, S_IFDIR | (mode & 07777), &ino);
    strata_pool_unlock();
    return rc;
}

int strata_mkdir(const char *path, unsigned int mode)
{
    return LOCKED(do_mkdir(path, mode));
}

static int do_remove(const char *path, int dir)
{
    uint32_t parent;
    const char *name;
    size_t nlen;
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    struct strata_dirent *d = NULL;
    if (path_parent(path, &parent, &name, &nlen) != 0) {
        if (dir && errno == EBUSY)
            errno = EBUSY;
        goto out;
    }
    if ((d = dir_lookup(parent, name, nlen)) == NULL) {
        errno = ENOENT;
        goto out;
    }
    struct strata_inode *in = &G.inodes[d->ino];
    if (perm_check(&G.inodes[parent], W_OK | X_OK, 0) != 0 || perm_sticky(&G.inodes[parent], in) != 0)
        goto out;
    if (!dir && S_ISDIR(in->mode)) {
        errno = EISDIR;
        goto out;
    }
    if (dir && !S_ISDIR(in->mode)) {
        errno = ENOTDIR;
        goto out;
    }
    if (dir && !dir_is_empty(d->ino)) {
        errno = ENOTEMPTY;
        goto out;
    }
    uint32_t ino = d->ino;
    struct strata_entry h = {.kind = dir ? STRATA_E_RMDIR : STRATA_E_UNLINK,
                             .ino = ino, .gen = in->gen, .parent = parent};
    rc = ns_commit(&h, name, nlen, NULL, 0);
    if (!ino_alive(ino, h.gen))
        pend_drop(ino);
out:
    strata_pool_unlock();
    return rc;
}

int strata_unlink(const char *path) { return LOCKED(do_remove(path, 0)); }
int strata_rmdir(const char *path) { return LOCKED(do_remove(path, 1)); }

/* A symbolic link: its target is stored as the inode's data (one block at
 * most), written when the entry is applied. */
static int do_symlink(const char *target, const char *path)
{
    uint32_t parent, ino;
    const char *name;
    size_t nlen, tlen = strlen(target);
    if (tlen == 0) {
        errno = ENOENT;
        return -1;
    }
    if (tlen >= STRATA_BLOCK) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    if (new_name(path, &parent, &name, &nlen) != 0) {
    } else if (strata_free_blocks() <= credits_held()) {
        errno = ENOSPC; /* the target needs a block */
    } else {
        rc = ns_create_target(parent, name, nlen, S_IFLNK | 0777, target, tlen, &ino);
    }
    strata_pool_unlock();
    return rc;
}

int strata_symlink(const char *target, const char *path) { return LOCKED(do_symlink(target, path)); }

static ssize_t do_readlink(const char *path, char *buf, size_t len)
{
    uint32_t ino;
    char t[STRATA_BLOCK];
    if (path_resolve_nofollow(path, &ino) != 0)
        return -1;
    if (!S_ISLNK(G.inodes[ino].mode)) {
        errno = EINVAL;
        return -1;
    }
    int n = symlink_target(ino, t, sizeof(t));
    if (n < 0)
        return -1;
    size_t k = (size_t)n < len ? (size_t)n : len;
    memcpy(buf, t, k);
    return (ssize_t)k;
}

ssize_t strata_readlink(const char *path, char *buf, size_t len) { return LOCKED(do_readlink(path, buf, len)); }

int strata_realpath_pool(const char *path, char *out) { return LOCKED(path_canonical(path, out)); }

/* A hard link: another name for a file (not a directory: EPERM). */
static int do_link(const char *from, const char *to)
{
    uint32_t ino, parent;
    const char *name;
    size_t nlen;
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    if (path_resolve_nofollow(from, &ino) != 0 || path_parent(to, &parent, &name, &nlen) != 0) {
        if (errno == EBUSY || errno == EINVAL) /* "/" or "." / ".." as the new name */
            errno = EEXIST;
        goto out;
    }
    if (dir_lookup(parent, name, nlen)) {
        errno = EEXIST;
    } else if (S_ISDIR(G.inodes[ino].mode)) {
        errno = EPERM;
    } else if (to[strlen(to) - 1] == '/') {
        errno = ENOENT;
    } else if (perm_check(&G.inodes[parent], W_OK | X_OK, 0) == 0) {
        struct strata_entry h = {.kind = STRATA_E_LINK, .ino = ino, .gen = G.inodes[ino].gen, .parent = parent};
        rc = ns_commit(&h, name, nlen, NULL, 0);
    }
out:
    strata_pool_unlock();
    return rc;
}

int strata_link(const char *from, const char *to) { return LOCKED(do_link(from, to)); }

/* Is dir `a` the same as, or an ancestor of, dir `b`? */
static int is_ancestor(uint32_t a, uint32_t b)
{
    for (uint32_t i = 0; i < G.sb->ninodes; i++) {
        if (b == a)
            return 1;
        if (b == STRATA_ROOT_INO)
            return 0;
        b = G.inodes[b].parent;
    }
    return 0;
}

static int do_rename(const char *from, const char *to)
{
    uint32_t p1, p2;
    const char *n1, *n2;
    size_t l1, l2;
    if (ns_claim() != 0 || strata_pool_lock() != 0)
        return -1;
    int rc = -1;
    if (path_parent(from, &p1, &n1, &l1) != 0 || path_parent(to, &p2, &n2, &l2) != 0)
        goto out;
    struct strata_dirent *src = dir_lookup(p1, n1, l1), *dst = dir_lookup(p2, n2, l2);
    if (src == NULL) {
        errno = ENOENT;
        goto out;
    }
    uint32_t ino = src->ino;
    struct strata_inode *in = &G.inodes[ino];
    if (src == dst || (dst && dst->ino == ino)) {
        rc = 0;
        goto out;
    }
    if (perm_check(&G.inodes[p1], W_OK | X_OK, 0) != 0 || perm_check(&G.inodes[p2], W_OK | X_OK, 0) != 0 ||
        perm_sticky(&G.inodes[p1], in) != 0 || (dst && perm_sticky(&G.inodes[p2], &G.inodes[dst->ino]) != 0) ||
        (S_ISDIR(in->mode) && p1 != p2 && perm_check(in, W_OK, 0) != 0)) /* its ".." changes */
        goto out;
    if (S_ISDIR(in->mode) && is_ancestor(ino, p2)) {
        errno = EINVAL;
        goto out;
    }
    struct strata_entry h = {.kind = STRATA_E_RENAME, .ino = ino, .gen = in->gen,
                             .parent = p1, .parent2 = p2};
    if (dst && S_ISDIR(G.inodes[dst->ino].mode) && is_ancestor(dst->ino, p1)) {
        errno = ENOTEMPTY; /* target is an ancestor of the source (Linux order) */
        goto out;
    }
    if (dst) {
        struct strata_inode *v = &G.inodes[dst->ino];
        if (S_ISDIR(in->mode) && !S_ISDIR(v->mode)) {
            errno = ENOTDIR;
            goto out;
        }
        if (!S_ISDIR(in->mode) && S_ISDIR(v->mode)) {
            errno = EISDIR;
            goto out;
        }
        if (S_ISDIR(v->mode) && !dir_is_empty(dst->ino)) {
            errno = ENOTEMPTY;
            goto out;
        }
        h.ino2 = dst->ino;
        h.gen2 = v->gen;
    }
    rc = ns_commit(&h, n1, l1, n2, l2);
    if (h.ino2 && !ino_alive(h.ino2, h.gen2))
        pend_drop(h.ino2);
out:
    strata_pool_unlock();
    return rc;
}

int strata_rename(const char *from, const char *to) { return LOCKED(do_rename(from, to)); }

static void fill_stat(uint32_t ino, uint32_t gen, struct stat *st)
{
    see_foreign_writes(ino); /* best effort: a log digest cannot apply fails the reads */
    struct strata_inode *in = &G.inodes[ino];
    memset(st, 0, sizeof(*st));
    st->st_dev = 0x5354; /* "ST": distinct from kernel devices */
    st->st_ino = ino;
    st->st_mode = in->mode;
    st->st_nlink = S_ISDIR(in->mode) ? 2
                   : !ino_alive(ino, gen) || in->parent == STRATA_ORPHAN ? 0
                   : in->nlink ? in->nlink : 1;
    st->st_uid = in->uid;
    st->st_gid = in->gid;
    st->st_size = (off_t)file_size(ino, gen);
    st->st_blksize = STRATA_BLOCK;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_mtim.tv_sec = st->st_atim.tv_sec = in->mtime_s;
    st->st_ctim.tv_sec = in->ctime_s;
}

static int do_stat(const char *path, struct stat *st, int follow)
{
    uint32_t ino;
    if ((follow ? path_resolve(path, &ino) : path_resolve_nofollow(path, &ino)) != 0)
        return -1;
    fill_stat(ino, G.inodes[ino].gen, st);
    return 0;
}

int strata_stat(const char *path, struct stat *st) { return LOCKED(do_stat(path, st, 1)); }
int strata_lstat(const char *path, struct stat *st) { return LOCKED(do_stat(path, st, 0)); }

static int do_fstat(int fd, struct stat *st)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    fill_stat(f->ino, f->gen, st);
    return 0;
}

int strata_fstat(int fd, struct stat *st) { return LOCKED(do_fstat(fd, st)); }

static int do_access(const char *path, int mode)
{
    uint32_t ino;
    if (path_resolve(path, &ino) != 0)
        return -1;
    return mode == F_OK ? 0 : perm_check(&G.inodes[ino], mode & (R_OK | W_OK | X_OK), 1);
}

int strata_access(const char *path, int mode) { return LOCKED(do_access(path, mode)); }

static int do_listdir(const char *path, struct strata_dirent_out **out)
{
    uint32_t ino;
    if (path_resolve(path, &ino) != 0)
        return -1;
    if (!S_ISDIR(G.inodes[ino].mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if (perm_check(&G.inodes[ino], R_OK, 0) != 0)
        return -1;
    int n = 0, cap = 16;
    struct strata_dirent_out *v = malloc(cap * sizeof(*v));
    for (uint32_t i = 0; v && i < G.sb->ndirents; i++) {
        struct strata_dirent *d = &G.dirents[i];
        if (d->state != 1 || d->parent != ino)
            continue;
        if (n == cap) {
            void *nv = realloc(v, (cap *= 2) * sizeof(*v));
            if (nv == NULL) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[n].ino = d->ino;
        uint32_t m = G.inodes[d->ino].mode;
        v[n].type = S_ISDIR(m) ? DT_DIR : S_ISLNK(m) ? DT_LNK : DT_REG;
        memcpy(v[n].name, d->name, d->name_len);
        v[n].name[d->name_len] = 0;
        n++;
    }
    if (v == NULL) {
        errno = ENOMEM;
        return -1;
    }
    *out = v;
    return n;
}

int strata_listdir(const char *path, struct strata_dirent_out **out) { return LOCKED(do_listdir(path, out)); }

int strata_ls(const char *path, char *buf, size_t len)
{
    struct strata_dirent_out *v;
    int n = strata_listdir(path, &v);
    if (n < 0)
        return -1;
    size_t used = 0;
    if (len)
        buf[0] = 0;
    for (int i = 0; i < n && used < len; i++) {
        char full[PATH_MAX];
        struct stat st;
        snprintf(full, sizeof(full), "%s/%s", strcmp(path, "/") ? path : "", v[i].name);
        if (strata_stat(full, &st) != 0)
            continue;
        int w = snprintf(buf + used, len - used, "%c %lu %s\n", S_ISDIR(st.st_mode) ? 'd' : '-',
                         (unsigned long)st.st_size, v[i].name);
        used += w > 0 ? (size_t)w : 0;
    }
    free(v);
    return used >= len ? (errno = ENOBUFS, -1) : n;
}
