/*
 * fsck: mount the pool (which replays dead processes' logs, like any mount)
 * and then check the shared area under the pool lock: every dirent names a
 * live inode in the right place of the hash, no duplicate names, every inode
 * reachable, directory parents consistent, block pointers in range and used
 * once, no blocks past EOF, bitmap and free count exact, live logs scan clean.
 */
#include "strata_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct report {
    char *buf;
    size_t len, used;
    int problems;
};

__attribute__((format(printf, 2, 3))) static void problem(struct report *r, const char *fmt, ...)
{
    r->problems++;
    if (r->used + 1 >= r->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->used, r->len - r->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->used += (size_t)n < r->len - r->used ? (size_t)n : r->len - r->used - 1;
}

/* Claim block b for inode ino; complains about range and double use. */
static void claim(struct report *r, uint32_t *owner, uint32_t ino, uint32_t b)
{
    if (b == 0)
        return;
    if (b < G.sb->off_data / STRATA_BLOCK || b >= G.sb->nblocks) {
        problem(r, "inode %u: block %u outside the data area\n", ino, b);
        return;
    }
    if (owner[b])
        problem(r, "block %u used by inodes %u and %u\n", b, owner[b], ino);
    owner[b] = ino;
}

static uint32_t *tbl(uint32_t b) { return (uint32_t *)(G.base + (uint64_t)b * STRATA_BLOCK); }

/* Claim b, a table `levels` levels above the data blocks mapping file blocks
 * from base on (0: a data block), and every block under it; a data block
 * at or past nb (the file's blocks) is mapped past EOF. */
static void claim_tree(struct report *r, uint32_t *owner, uint32_t ino, uint32_t b, int levels,
                       uint64_t base, uint64_t nb)
{
    claim(r, owner, ino, b);
    if (b == 0)
        return;
    if (levels == 0) {
        if (base >= nb)
            problem(r, "inode %u: block index %llu mapped past EOF (%llu blocks)\n", ino,
                    (unsigned long long)base, (unsigned long long)nb);
        return;
    }
    if (!valid_blk(b))
        return;
    uint64_t span = 1;
    for (int l = 1; l < levels; l++)
        span *= STRATA_PTRS_PER_BLOCK;
    for (uint32_t k = 0; k < STRATA_PTRS_PER_BLOCK; k++)
        claim_tree(r, owner, ino, tbl(b)[k], levels - 1, base + k * span, nb);
}

static void check_inode(struct report *r, uint32_t *owner, uint32_t ino)
{
    struct strata_inode *in = &G.inodes[ino];
    uint64_t nb = (in->size + STRATA_BLOCK - 1) / STRATA_BLOCK;
    const uint64_t ptrs = STRATA_PTRS_PER_BLOCK;
    for (uint32_t k = 0; k < STRATA_NDIRECT; k++)
        claim_tree(r, owner, ino, in->direct[k], 0, k, nb);
    claim_tree(r, owner, ino, in->ind, 1, STRATA_NDIRECT, nb);
    claim_tree(r, owner, ino, in->dind, 2, STRATA_NDIRECT + ptrs, nb);
    claim_tree(r, owner, ino, in->tind, 3, STRATA_NDIRECT + ptrs + ptrs * ptrs, nb);
    if (!S_ISREG(in->mode) && !S_ISDIR(in->mode) && !S_ISLNK(in->mode))
        problem(r, "inode %u: bad mode %o\n", ino, in->mode);
    else if (S_ISLNK(in->mode) && (in->size == 0 || in->size >= STRATA_BLOCK))
        problem(r, "inode %u: symbolic link with a target of %lu bytes\n", ino, (unsigned long)in->size);
}

static void check_dirents(struct report *r, uint8_t *reach)
{
    for (uint32_t i = 0; i < G.sb->ndirents; i++) {
        struct strata_dirent *d = &G.dirents[i];
        if (d->state > 2)
            problem(r, "dirent %u: bad state %u\n", i, d->state);
        if (d->state != 1)
            continue;
        if (d->name_len == 0 || d->name_len > STRATA_NAME_MAX || memchr(d->name, '/', d->name_len)) {
            problem(r, "dirent %u: bad name\n", i);
            continue;
        }
        struct strata_inode *p = ino_get(d->parent), *in = ino_get(d->ino);
        if (p == NULL || !S_ISDIR(p->mode))
            problem(r, "dirent %u '%.*s': parent %u is not a directory\n", i, d->name_len, d->name, d->parent);
        if (in == NULL || in->mode == 0) {
            problem(r, "dirent %u '%.*s': names free inode %u\n", i, d->name_len, d->name, d->ino);
            continue;
        }
        if (dir_lookup(d->parent, d->name, d->name_len) != d)
            problem(r, "dirent %u '%.*s': duplicate or unreachable in the hash\n", i, d->name_len, d->name);
        uint32_t names = ++reach[d->ino], nlink = in->nlink ? in->nlink : 1;
        if (S_ISDIR(in->mode) ? names > 1 : names > nlink)
            problem(r, "inode %u has more names than its link count %u\n", d->ino, nlink);
        if (in->parent == STRATA_ORPHAN)
            problem(r, "inode %u: marked unlinked but has a name\n", d->ino);
        if (S_ISDIR(in->mode) && in->parent != d->parent)
            problem(r, "directory inode %u: parent %u but listed under %u\n", d->ino, in->parent, d->parent);
    }
}

static void check_logs(struct report *r)
{
    for (uint32_t i = 0; i < G.sb->nslots; i++) {
        int torn;
        uint64_t end = log_scan((int)i, NULL, NULL, &torn);
        int alive = strata_owner_alive(G.slots[i].owner_pid, G.slots[i].owner_start);
        if (torn && alive)
            problem(r, "slot %u (live pid %d): torn entry inside the log\n", i, G.slots[i].owner_pid);
        /* mounting digested every dead process's log and reset it; one left
         * holds entries digest could not apply, which no other process sees */
        if (!alive && (int)i != G.slot && end > 0)
            problem(r, "slot %u (dead pid %d): %llu bytes of log could not be digested\n", i,
                    G.slots[i].owner_pid, (unsigned long long)end);
    }
}

static int check(struct report *r)
{
    struct strata_super *sb = G.sb;
    uint8_t *reach = calloc(sb->ninodes, 1);
    uint32_t *owner = calloc(sb->nblocks, sizeof(*owner));
    if (!reach || !owner) {
        free(reach);
        free(owner);
        errno = ENOMEM;
        return -1;
    }
    if (!S_ISDIR(G.inodes[STRATA_ROOT_INO].mode))
        problem(r, "root inode is not a directory\n");
    check_dirents(r, reach);
    for (uint32_t i = 2; i < sb->ninodes; i++) {
        if (G.inodes[i].mode == 0)
            continue;
        int open_orphan = G.inodes[i].parent == STRATA_ORPHAN && strata_pid_alive(G.inodes[i].lease_pid);
        if (!reach[i] && !open_orphan)
            problem(r, "inode %u is allocated but has no name\n", i);
        uint32_t nlink = G.inodes[i].nlink ? G.inodes[i].nlink : 1;
        if (S_ISREG(G.inodes[i].mode) && reach[i] && reach[i] < nlink)
            problem(r, "inode %u: link count %u but %u names\n", i, nlink, reach[i]);
        check_inode(r, owner, i);
    }
    uint64_t first = sb->off_data / STRATA_BLOCK, used = 0;
    for (uint64_t b = first; b < sb->nblocks; b++) {
        used += owner[b] != 0;
        if (!!owner[b] != blk_used((uint32_t)b))
            problem(r, "block %lu: bitmap says %s\n", (unsigned long)b, owner[b] ? "free but in use" : "used but leaked");
    }
    if (sb->free_blocks != sb->nblocks - first - used)
        problem(r, "free block count %lu, actual %lu\n", (unsigned long)sb->free_blocks,
                (unsigned long)(sb->nblocks - first - used));
    check_logs(r);
    free(reach);
    free(owner);
    return 0;
}

int strata_fsck(const char *pool_path, char *buf, size_t len)
{
    if (strata_attach(pool_path) != 0)
        return -1;
    struct report r = {.buf = buf, .len = len};
    if (len)
        buf[0] = 0;
    pthread_mutex_lock(&G.mu);
    int rc = strata_pool_lock();
    if (rc == 0) {
        rc = check(&r);
        strata_pool_unlock();
    }
    pthread_mutex_unlock(&G.mu);
    return rc < 0 ? -1 : r.problems;
}
