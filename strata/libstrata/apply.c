/*
 * Applying log entries to the shared area.  Namespace entries are applied
 * eagerly (right after they commit, under the pool lock); after a crash the
 * one entry that may have been half-applied is applied again, so each step
 * checks what is already there.  Data entries (write, ref, truncate) are
 * applied by digest and skip inodes whose generation no longer matches
 * (the file was unlinked, and maybe its inode reused, after the write).
 */
#include "strata_internal.h"

#include <errno.h>
#include <sys/stat.h>

/* Entries applied eagerly at commit: namespace changes and metadata. */
int is_namespace(const struct strata_entry *e)
{
    return (e->kind >= STRATA_E_CREATE && e->kind <= STRATA_E_RENAME) || e->kind == STRATA_E_SETATTR ||
           e->kind == STRATA_E_LINK;
}

const char *entry_data(const struct strata_entry *e)
{
    if (e->kind == STRATA_E_WRITE_REF)
        return G.base + ((const struct strata_ref *)entry_payload(e))->pool_off;
    return entry_payload(e);
}

static int apply_create(const struct strata_entry *e)
{
    struct strata_inode *in = ino_get(e->ino);
    if (in == NULL || ino_get(e->parent) == NULL)
        return -1;
    if (!ino_alive(e->ino, e->gen)) {
        if (in->mode != 0)
            return -1; /* inode taken by someone else: never overwrite it */
        ino_init(e->ino, e->gen, (uint32_t)e->len, e->parent, (uint32_t)(e->off >> 32), (uint32_t)e->off);
    }
    /* a symbolic link's target (second name) becomes its data */
    if (S_ISLNK(in->mode) && in->size == 0 && e->name2_len &&
        shared_write(e->ino, 0, entry_name2(e), e->name2_len) != 0)
        return -1;
    if (dir_lookup(e->parent, entry_name(e), e->name_len) == NULL)
        return dir_insert(e->parent, entry_name(e), e->name_len, e->ino);
    return 0;
}

/* One name of ino is gone (removed == 1: by this very apply).  A file with
 * other names loses one from its count; the last name releases it.  On a
 * replay that finds the name already gone, a file that had several names
 * is left as it is: the crash that forces the replay also makes the next
 * lock holder repair, which recounts names (pool.c). */
static void drop_name(uint32_t ino, uint32_t gen, int removed)
{
    if (!ino_alive(ino, gen))
        return;
    struct strata_inode *in = ino_get(ino);
    if (in->nlink > 1) {
        if (removed) {
            in->nlink--;
            strata_persist(&in->nlink, sizeof(in->nlink));
        }
        return;
    }
    ino_release(ino);
}

static void apply_remove(const struct strata_entry *e)
{
    struct strata_dirent *d = dir_lookup(e->parent, entry_name(e), e->name_len);
    int removed = d && d->ino == e->ino;
    if (removed)
        dir_remove(d);
    drop_name(e->ino, e->gen, removed);
}

static int apply_link(const struct strata_entry *e)
{
    if (!ino_alive(e->ino, e->gen) || ino_get(e->parent) == NULL)
        return 0; /* the file went away meanwhile (replay) */
    if (dir_lookup(e->parent, entry_name(e), e->name_len) != NULL)
        return 0;
    struct strata_inode *in = ino_get(e->ino);
    if (dir_insert(e->parent, entry_name(e), e->name_len, e->ino) != 0)
        return -1;
    in->nlink = (in->nlink ? in->nlink : 1) + 1;
    strata_persist(&in->nlink, sizeof(in->nlink));
    return 0;
}

static int apply_rename(const struct strata_entry *e)
{
    struct strata_dirent *dst = dir_lookup(e->parent2, entry_name2(e), e->name2_len);
    int replaced = 0;
    if (dst && dst->ino != e->ino) {
        dst->ino = e->ino; /* replace the victim atomically (one 4-byte store) */
        strata_persist(&dst->ino, sizeof(dst->ino));
        replaced = 1;
    } else if (dst == NULL && dir_insert(e->parent2, entry_name2(e), e->name2_len, e->ino) != 0) {
        return -1;
    }
    if (e->ino2)
        drop_name(e->ino2, e->gen2, replaced);
    struct strata_dirent *src = dir_lookup(e->parent, entry_name(e), e->name_len);
    if (src && src->ino == e->ino)
        dir_remove(src);
    struct strata_inode *in = ino_get(e->ino);
    if (in && S_ISDIR(in->mode) && in->parent != e->parent2) {
        in->parent = e->parent2;
        strata_persist(&in->parent, sizeof(in->parent));
    }
    return 0;
}

int apply_namespace(const struct strata_entry *e)
{
    switch (e->kind) {
    case STRATA_E_CREATE:
    case STRATA_E_MKDIR:
        return apply_create(e);
    case STRATA_E_UNLINK:
    case STRATA_E_RMDIR:
        apply_remove(e);
        return 0;
    case STRATA_E_RENAME:
        return apply_rename(e);
    case STRATA_E_LINK:
        return apply_link(e);
    case STRATA_E_SETATTR:
        if (ino_alive(e->ino, e->gen)) {
            struct strata_inode *in = ino_get(e->ino);
            uint32_t what = e->ino2 ? e->ino2 : STRATA_ATTR_MODE;
            if (what & STRATA_ATTR_MODE)
                in->mode = (in->mode & S_IFMT) | ((uint32_t)e->len & 07777);
            if (what & STRATA_ATTR_OWNER) {
                in->uid = (uint32_t)(e->off >> 32);
                in->gid = (uint32_t)e->off;
            }
            if (what & STRATA_ATTR_MTIME)
                in->mtime_s = e->gen2;
            in->ctime_s = e->mtime_s;
            strata_persist(in, sizeof(*in));
        }
        return 0;
    }
    return 0;
}

int apply_data(const struct strata_entry *e)
{
    if (!ino_alive(e->ino, e->gen))
        return 0;
    switch (e->kind) {
    case STRATA_E_WRITE:
    case STRATA_E_WRITE_REF:
        return shared_write(e->ino, e->off, entry_data(e), e->len);
    case STRATA_E_TRUNCATE:
        return shared_truncate(e->ino, e->len);
    }
    return 0;
}
