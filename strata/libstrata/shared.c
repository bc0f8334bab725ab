/*
 * The shared area: inode table, block allocator (bitmap) and file data.
 * Only called with the pool lock held.  Every update persists the new block
 * before the pointer to it, and clears a pointer before freeing its block, so
 * a crash can leak blocks (repair recounts them) but never share one.
 */
#include "strata_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NIND (STRATA_NDIRECT + STRATA_PTRS_PER_BLOCK)
#define NDIND ((uint64_t)STRATA_PTRS_PER_BLOCK * STRATA_PTRS_PER_BLOCK)

static uint32_t alloc_cursor;

struct strata_inode *ino_get(uint32_t ino)
{
    return ino > 0 && ino < G.sb->ninodes ? &G.inodes[ino] : NULL;
}

int ino_alive(uint32_t ino, uint32_t gen)
{
    struct strata_inode *i = ino_get(ino);
    return i && i->mode != 0 && i->gen == gen;
}

uint32_t ino_alloc(void)
{
    for (uint32_t i = STRATA_ROOT_INO + 1; i < G.sb->ninodes; i++)
        if (G.inodes[i].mode == 0)
            return i;
    return 0;
}

void ino_init(uint32_t ino, uint32_t gen, uint32_t mode, uint32_t parent, uint32_t uid, uint32_t gid)
{
    struct strata_inode *i = &G.inodes[ino];
    memset(i, 0, sizeof(*i));
    i->gen = gen;
    i->parent = parent;
    i->uid = uid;
    i->gid = gid;
    i->mtime_s = i->ctime_s = time(NULL);
    i->mode = mode;
    strata_persist(i, sizeof(*i));
}

static char *blk(uint32_t b) { return G.base + (uint64_t)b * STRATA_BLOCK; }

/* A block pointer read from the pool is only followed if it names a data
 * block: a corrupted pointer is reported (EUCLEAN), never dereferenced. */
int valid_blk(uint32_t b) { return b >= G.sb->off_data / STRATA_BLOCK && b < G.sb->nblocks; }

int blk_used(uint32_t b) { return (G.bitmap[b / 8] >> (b % 8)) & 1; }

/* Write back the bitmap bits of blocks b[0..n) and the free count, once
 * each is final (no fence).  A file's blocks share bitmap lines, and
 * writing back a line dirtied again costs a trip to memory each time: one
 * flush per line of a run. */
static void blocks_counted_flush(const uint32_t *b, int n)
{
    const uint8_t *line = NULL;
    for (int i = 0; i < n; i++) {
        const uint8_t *l = (const uint8_t *)((uintptr_t)&G.bitmap[b[i] / 8] & ~(uintptr_t)63);
        if (line != NULL && l != line)
            strata_flush(line, 64);
        line = l;
    }
    if (line != NULL)
        strata_flush(line, 64);
    strata_flush(&G.sb->free_blocks, sizeof(G.sb->free_blocks));
}

/* Take a free block: its bitmap bit and the free count change in memory;
 * the caller writes them back (blocks_counted_flush) and drains before it
 * stores any pointer to the block. */
static uint32_t block_take(void)
{
    uint32_t first = (uint32_t)(G.sb->off_data / STRATA_BLOCK), n = (uint32_t)G.sb->nblocks;
    if (G.sb->free_blocks == 0)
        return 0;
    pool_punch_flush(); /* a freed block whose page is still to be punched may be reused now */
    if (alloc_cursor < first || alloc_cursor >= n)
        alloc_cursor = first;
    for (uint32_t k = 0; k < n - first; k++) {
        uint32_t b = alloc_cursor + k;
        if (b >= n)
            b -= n - first;
        if (!blk_used(b)) {
            if (pool_back_block(b) != 0)
                return 0; /* the backing file system is full: ENOSPC */
            G.bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
            G.sb->free_blocks--;
            alloc_cursor = b + 1;
            return b;
        }
    }
    return 0;
}

/* Set *ptr to a fresh block whose content (src, or zeros) is persisted
 * before the pointer. */
static int fill_block(uint32_t *ptr, const void *src)
{
    uint32_t b = block_take();
    if (b == 0)
        return -1;
    blocks_counted_flush(&b, 1);
    strata_fill_nodrain(blk(b), src, STRATA_BLOCK);
    strata_drain();   /* the content and the allocation are durable before the pointer */
    *ptr = b;
    strata_persist(ptr, sizeof(*ptr));
    return 0;
}

/*
 * The new blocks of one shared_write that are filled but not linked yet.
 * A fence per block (content, bitmap, free count, pointer: four each) cost
 * digest 3.3x a persistent copy of the same bytes; here one fence makes
 * a batch's contents and allocations durable, then its pointers are stored
 * and flushed under a second.  The order a crash may observe is unchanged:
 * no pointer before its block's content and allocation.
 */
#define LINK_BATCH 64

struct link_batch {
    int n;
    uint32_t *ptr[LINK_BATCH];
    uint32_t blk[LINK_BATCH];
};

static void link_batch_publish(struct link_batch *lb)
{
    if (lb->n > 0)
        blocks_counted_flush(lb->blk, lb->n);
    strata_drain();
    if (lb->n == 0)
        return;
    for (int i = 0; i < lb->n; i++)
        *lb->ptr[i] = lb->blk[i];
    /* consecutive file blocks have adjacent pointers: one flush per run */
    for (int i = 0, j; i < lb->n; i = j) {
        for (j = i + 1; j < lb->n && lb->ptr[j] == lb->ptr[j - 1] + 1; j++)
            ;
        strata_flush(lb->ptr[i], (size_t)(j - i) * sizeof(uint32_t));
    }
    strata_drain();
    lb->n = 0;
}

/* A new block for file bytes [boff, boff+n) of its block from src, zeros
 * around them; linked at the batch's publish. */
static int link_batch_fill(struct link_batch *lb, uint32_t *ptr, uint64_t boff, const char *src, uint64_t n)
{
    uint32_t b = block_take();
    if (b == 0) {
        errno = ENOSPC;
        return -1;
    }
    if (boff > 0)
        strata_fill_nodrain(blk(b), NULL, boff);
    strata_fill_nodrain(blk(b) + boff, src, n);
    if (boff + n < STRATA_BLOCK)
        strata_fill_nodrain(blk(b) + boff + n, NULL, STRATA_BLOCK - boff - n);
    lb->ptr[lb->n] = ptr;
    lb->blk[lb->n++] = b;
    if (lb->n == LINK_BATCH)
        link_batch_publish(lb);
    return 0;
}

/* Levels of tables above file block idx (>= STRATA_NDIRECT): 1 under the
 * indirect block, 2 the double-, 3 the triple-indirect; 0 past the largest
 * file.  *idx becomes the block's index within its tree, *span how many
 * blocks the tree maps. */
static int tree_of(uint64_t *idx, uint64_t *span)
{
    uint64_t i = *idx - STRATA_NDIRECT, n = STRATA_PTRS_PER_BLOCK;
    for (int levels = 1; levels <= 3; levels++, n *= STRATA_PTRS_PER_BLOCK) {
        if (i < n) {
            *idx = i;
            *span = n;
            return levels;
        }
        i -= n;
    }
    return 0;
}

/* Where the block number of file block idx lives; NULL if absent (alloc=0)
 * or out of space (alloc=1, errno ENOSPC/EFBIG). */
static uint32_t *bmap(struct strata_inode *in, uint64_t idx, int alloc)
{
    if (idx < STRATA_NDIRECT)
        return &in->direct[idx];
    uint64_t span;
    int levels = tree_of(&idx, &span);
    if (levels == 0) {
        errno = EFBIG;
        return NULL;
    }
    uint32_t *p = levels == 1 ? &in->ind : levels == 2 ? &in->dind : &in->tind;
    for (; levels > 0; levels--) { /* each table a fresh zeroed block, persisted before its pointer */
        if (*p == 0 && (!alloc || fill_block(p, NULL) != 0))
            goto absent;
        if (!valid_blk(*p))
            goto corrupt;
        span /= STRATA_PTRS_PER_BLOCK;
        p = (uint32_t *)blk(*p) + idx / span;
        idx %= span;
    }
    return p;
absent:
    errno = alloc ? ENOSPC : 0;
    return NULL;
corrupt:
    errno = EUCLEAN;
    return NULL;
}

/* Blocks already linked are overwritten in place: a crash in the middle
 * leaves a mix of old and new bytes, which recovery's replay of the log
 * entry being digested overwrites again. */
int shared_write(uint32_t ino, uint64_t off, const void *buf, uint64_t len)
{
    struct strata_inode *in = &G.inodes[ino];
    struct link_batch lb = {.n = 0};
    const char *src = buf;
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done, boff = pos % STRATA_BLOCK;
        uint64_t n = STRATA_BLOCK - boff < len - done ? STRATA_BLOCK - boff : len - done;
        uint32_t *ptr = bmap(in, pos / STRATA_BLOCK, 1);
        int rc = 0;
        if (ptr == NULL)
            rc = -1;
        else if (*ptr == 0)
            rc = link_batch_fill(&lb, ptr, boff, src + done, n);
        else if (valid_blk(*ptr))
            strata_fill_nodrain(blk(*ptr) + boff, src + done, n);
        else {
            errno = EUCLEAN;
            rc = -1;
        }
        if (rc != 0) {
            int e = errno;
            link_batch_publish(&lb); /* what was filled is linked, not leaked */
            errno = e;
            return -1;
        }
        done += n;
    }
    link_batch_publish(&lb);
    if (off + len > in->size) {
        in->size = off + len;
        strata_persist(&in->size, sizeof(in->size));
    }
    in->mtime_s = time(NULL);
    return 0;
}

int shared_read(uint32_t ino, uint64_t off, void *buf, uint64_t len)
{
    struct strata_inode *in = &G.inodes[ino];
    char *dst = buf;
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done, boff = pos % STRATA_BLOCK;
        uint64_t n = STRATA_BLOCK - boff < len - done ? STRATA_BLOCK - boff : len - done;
        uint32_t *ptr = bmap(in, pos / STRATA_BLOCK, 0);
        if ((ptr == NULL && errno == EUCLEAN) || (ptr && *ptr && !valid_blk(*ptr))) {
            errno = EUCLEAN;
            return -1;
        }
        if (ptr && *ptr)
            memcpy(dst + done, blk(*ptr) + boff, n);
        else
            memset(dst + done, 0, n);
        done += n;
    }
    return 0;
}

/*
 * Upper bound on the blocks digest will allocate for a write of [off,
 * off+len) to a file whose logical size (with pending ops) is size: blocks
 * past the pending end (the earlier pending blocks were charged when they
 * were written), holes of the shared file inside the range, and indirect
 * blocks the shared file does not have yet.
 */
uint64_t blocks_needed(uint32_t ino, uint32_t gen, uint64_t size, uint64_t off, uint64_t len)
{
    struct strata_inode *in = ino_alive(ino, gen) ? &G.inodes[ino] : NULL;
    uint64_t first = off / STRATA_BLOCK, end = (off + len + STRATA_BLOCK - 1) / STRATA_BLOCK;
    uint64_t charged = (size + STRATA_BLOCK - 1) / STRATA_BLOCK;
    uint64_t shared = in ? (in->size + STRATA_BLOCK - 1) / STRATA_BLOCK : 0;
    uint64_t need = 0, last_group = UINT64_MAX;
    for (uint64_t i = first; i < end; i++) {
        if (i >= charged)
            need++;
        else if (i < shared) {
            uint32_t *p = bmap(in, i, 0);
            need += p == NULL || *p == 0;
        }
        if (i >= STRATA_NDIRECT) { /* the tables above i's group: at most one a level */
            uint64_t g = (i - STRATA_NDIRECT) / STRATA_PTRS_PER_BLOCK, idx = i, span;
            if (g != last_group) {
                uint32_t *p = in ? bmap(in, i, 0) : NULL;
                need += p == NULL ? (uint64_t)tree_of(&idx, &span) : 0; /* every level, at worst */
                last_group = g;
            }
        }
    }
    return need;
}

/*
 * The blocks of one truncate or unlink, freed in batches: their pointers
 * are cleared and flushed, one fence makes that durable, and only then are
 * the blocks marked free, under a second fence (a fence per pointer and two
 * per block before).  A crash in between leaks the batch's blocks (repair
 * recounts them), never lets one be both free and pointed to.
 */
#define FREE_BATCH 64

struct free_batch {
    int n;
    uint32_t blk[FREE_BATCH];
};

static void free_batch_flush(struct free_batch *fb)
{
    if (fb->n == 0)
        return;
    strata_drain();
    for (int i = 0; i < fb->n; i++) {
        uint32_t b = fb->blk[i];
        if (!blk_used(b))
            continue;
        G.bitmap[b / 8] &= (uint8_t)~(1u << (b % 8));
        pool_punch_block(b);
        G.sb->free_blocks++;
    }
    blocks_counted_flush(fb->blk, fb->n);
    strata_drain();
    fb->n = 0;
}

static void clear_ptr(struct free_batch *fb, uint32_t *p)
{
    uint32_t b = *p;
    if (b == 0)
        return;
    *p = 0;
    strata_flush(p, sizeof(*p));
    if (!valid_blk(b))
        return;
    fb->blk[fb->n++] = b;
    if (fb->n == FREE_BATCH)
        free_batch_flush(fb);
}

/* Free, under the pointer *p to a table `levels` levels above the data
 * blocks (0: *p is a data block) that maps file blocks from base on, every
 * block holding file blocks >= from, and the table itself once it maps none
 * of those below from.  A pointer outside the data area is cleared, never
 * followed. */
static void free_tree(struct free_batch *fb, uint32_t *p, int levels, uint64_t base, uint64_t from)
{
    if (*p == 0 || (levels == 0 && base < from))
        return;
    if (levels > 0 && valid_blk(*p)) {
        uint64_t span = 1;
        for (int l = 1; l < levels; l++)
            span *= STRATA_PTRS_PER_BLOCK;
        uint32_t *t = (uint32_t *)blk(*p);
        for (uint64_t k = 0; k < STRATA_PTRS_PER_BLOCK; k++)
            if (base + (k + 1) * span > from)
                free_tree(fb, &t[k], levels - 1, base + k * span, from);
    }
    if (base >= from || !valid_blk(*p))
        clear_ptr(fb, p);
}

/* Free every block holding file blocks >= from (and emptied indirect blocks). */
static void free_from(struct strata_inode *in, uint64_t from)
{
    struct free_batch fb = {.n = 0};
    for (uint64_t i = from; i < STRATA_NDIRECT; i++)
        clear_ptr(&fb, &in->direct[i]);
    free_tree(&fb, &in->ind, 1, STRATA_NDIRECT, from);
    free_tree(&fb, &in->dind, 2, NIND, from);
    free_tree(&fb, &in->tind, 3, NIND + NDIND, from);
    free_batch_flush(&fb);
}

/* Free blocks past EOF and zero the tail of the last block: the invariant
 * every read and extension relies on (bytes past EOF read as zero). */
static void trim_past(struct strata_inode *in, uint64_t size)
{
    free_from(in, (size + STRATA_BLOCK - 1) / STRATA_BLOCK);
    if (size % STRATA_BLOCK) {
        uint32_t *ptr = bmap(in, size / STRATA_BLOCK, 0);
        if (ptr && *ptr && valid_blk(*ptr)) {
            char *p = blk(*ptr) + size % STRATA_BLOCK;
            memset(p, 0, STRATA_BLOCK - size % STRATA_BLOCK);
            strata_persist(p, STRATA_BLOCK - size % STRATA_BLOCK);
        }
    }
}

void shared_trim(uint32_t ino)
{
    trim_past(&G.inodes[ino], G.inodes[ino].size);
}

int shared_truncate(uint32_t ino, uint64_t size)
{
    struct strata_inode *in = &G.inodes[ino];
    if (size < in->size)
        trim_past(in, size);
    in->size = size;
    in->mtime_s = time(NULL);
    strata_persist(in, sizeof(*in));
    return 0;
}

void ino_free(uint32_t ino)
{
    struct strata_inode *in = &G.inodes[ino];
    free_from(in, 0);
    in->size = 0;
    in->lease_pid = 0;
    in->mode = 0;
    strata_persist(in, sizeof(*in));
}

void ino_release(uint32_t ino)
{
    struct strata_inode *in = &G.inodes[ino];
    if (G.opens == NULL || G.opens[ino] == 0) {
        ino_free(ino);
        return;
    }
    /* POSIX: an unlinked file lives on while it is open */
    in->parent = STRATA_ORPHAN;
    in->lease_pid = G.pid;
    strata_persist(in, sizeof(*in));
}

void orphan_sweep(void)
{
    for (uint32_t i = STRATA_ROOT_INO + 1; i < G.sb->ninodes; i++) {
        struct strata_inode *in = &G.inodes[i];
        if (in->mode != 0 && in->parent == STRATA_ORPHAN &&
            (in->lease_pid == G.pid ? G.opens[i] == 0 : !strata_pid_alive(in->lease_pid)))
            ino_free(i);
    }
}

/* Count a block as used; returns it if it may be followed, else 0. */
static uint64_t mark(uint32_t b, uint64_t *used)
{
    if (b == 0 || !valid_blk(b))
        return 0;
    G.bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
    (*used)++;
    return b;
}

/* Mark b and, for a table `levels` above the data blocks, all it maps. */
static void mark_tree(uint32_t b, int levels, uint64_t *used)
{
    if (mark(b, used) && levels > 0)
        for (int k = 0; k < STRATA_PTRS_PER_BLOCK; k++)
            mark_tree(((uint32_t *)blk(b))[k], levels - 1, used);
}

uint64_t bitmap_rebuild(void)
{
    struct strata_super *sb = G.sb;
    uint64_t first = sb->off_data / STRATA_BLOCK, used = 0;
    for (uint64_t b = first; b < sb->nblocks; b++)
        G.bitmap[b / 8] &= (uint8_t)~(1u << (b % 8));
    for (uint32_t i = 1; i < sb->ninodes; i++) {
        struct strata_inode *in = &G.inodes[i];
        if (in->mode == 0)
            continue;
        for (int k = 0; k < STRATA_NDIRECT; k++)
            mark(in->direct[k], &used);
        mark_tree(in->ind, 1, &used);
        mark_tree(in->dind, 2, &used);
        mark_tree(in->tind, 3, &used);
    }
    strata_persist(G.bitmap, (sb->nblocks + 7) / 8);
    return sb->nblocks - first - used;
}
