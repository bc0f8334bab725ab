/*
 * LibFS data path: reads combine the shared area with this process's
 * undigested ops (the overlay, replayed in log order over the shared bytes);
 * truncate and lseek; the space reservation and digest threshold that the
 * write path (libfs_write.c) uses.  A write appends to this process's log and
 * returns once the entry is persisted (the durability point, so fsync has
 * nothing left to do).
 *
 * Space: digest allocates blocks later, so a write first reserves the blocks
 * it may need (credits, counted in the slot header so every process sees
 * them).  When the pool cannot cover a reservation even after digesting, the
 * write fails with ENOSPC and nothing is logged.
 */
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <libpmem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREDIT_CHUNK 256

void pend_drop(uint32_t ino)
{
    if (G.pend && G.pend[ino]) {
        free(G.pend[ino]->ops);
        free(G.pend[ino]);
        G.pend[ino] = NULL;
    }
}

/* Inodes given an overlay since the last pend_clear_all, so that a digest
 * (which clears them all) does not walk the whole inode table: with a digest
 * per write (lock-aware processes, locks.c) that walk was half the time. */
static uint32_t *pend_live, pend_nlive, pend_cap;

void pend_clear_all(void)
{
    if (pend_live == NULL) { /* could not track (OOM): the whole table */
        for (uint32_t i = 0; G.pend && i < G.sb->ninodes; i++)
            pend_drop(i);
        return;
    }
    for (uint32_t i = 0; i < pend_nlive; i++)
        pend_drop(pend_live[i]);
    pend_nlive = 0;
}

static struct pend_inode *pend_get(uint32_t ino, uint32_t gen)
{
    struct pend_inode *p = G.pend[ino];
    if (p && p->gen != gen) {
        pend_drop(ino);
        p = NULL;
    }
    if (p == NULL && (p = calloc(1, sizeof(*p))) != NULL) {
        if (pend_nlive == pend_cap && grow_array(&pend_live, &pend_cap, sizeof(*pend_live)) != 0) {
            free(pend_live); /* fall back to walking the table */
            pend_live = NULL;
            pend_cap = pend_nlive = 0;
        }
        if (pend_live != NULL)
            pend_live[pend_nlive++] = ino;
        p->gen = gen;
        p->size = ino_alive(ino, gen) ? G.inodes[ino].size : 0;
        G.pend[ino] = p;
    }
    return p;
}

int pend_add(uint32_t ino, uint32_t gen, uint8_t kind, uint64_t off, uint64_t len, const char *data)
{
    struct pend_inode *p = pend_get(ino, gen);
    if (p == NULL)
        return -1;
    if (p->nops == p->cap && grow_array(&p->ops, &p->cap, sizeof(*p->ops)) != 0)
        return -1;
    p->ops[p->nops++] = (struct pend_op){.kind = kind, .off = off, .len = len, .data = data};
    if (kind == STRATA_E_TRUNCATE)
        p->size = len;
    else if (off + len > p->size)
        p->size = off + len;
    return 0;
}

uint64_t file_size(uint32_t ino, uint32_t gen)
{
    struct pend_inode *p = G.pend[ino];
    if (p && p->gen == gen)
        return p->size;
    return ino_alive(ino, gen) ? G.inodes[ino].size : 0;
}

static ssize_t do_pread(int fd, void *buf, size_t len, int64_t off, int advance)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL || (f->o->flags & O_ACCMODE) == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    if (f->is_dir) {
        errno = EISDIR;
        return -1;
    }
    if (advance)
        off = (int64_t)f->o->off;
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    if (see_foreign_writes(f->ino) != 0)
        return -1;
    if (G.inodes[f->ino].mapped) { /* mapped stores not yet written back */
        ssize_t r = shadow_pread(f->ino, f->gen, buf, len, (uint64_t)off);
        if (r != -2) {
            if (r > 0 && advance)
                f->o->off += (uint64_t)r;
            return r;
        }
    }
    uint64_t size = file_size(f->ino, f->gen);
    if ((uint64_t)off >= size)
        return 0;
    uint64_t n = size - (uint64_t)off < len ? size - (uint64_t)off : len;
    char *dst = buf;
    if (ino_alive(f->ino, f->gen)) {
        pool_thread_lock(); /* not while this process's digest thread applies */
        int rc = shared_read(f->ino, (uint64_t)off, dst, n);
        pool_thread_unlock();
        if (rc != 0)
            return -1; /* corrupted block map (EUCLEAN) */
    } else
        memset(dst, 0, n);
    struct pend_inode *p = G.pend[f->ino];
    if (p && p->gen == f->gen) {
        uint64_t a = (uint64_t)off, b = a + n;
        for (uint32_t i = 0; i < p->nops; i++) {
            struct pend_op *o = &p->ops[i];
            if (o->kind == STRATA_E_TRUNCATE) {
                if (o->len < b)
                    memset(dst + (o->len > a ? o->len - a : 0), 0, b - (o->len > a ? o->len : a));
                continue;
            }
            uint64_t s = o->off > a ? o->off : a, e = o->off + o->len < b ? o->off + o->len : b;
            if (s < e)
                memcpy(dst + (s - a), o->data + (s - o->off), e - s);
        }
    }
    if (advance)
        f->o->off += n;
    return (ssize_t)n;
}

ssize_t strata_pread(int fd, void *buf, size_t len, int64_t off)
{
    return LOCKED(do_pread(fd, buf, len, off, 0));
}

ssize_t strata_read(int fd, void *buf, size_t len)
{
    return LOCKED(do_pread(fd, buf, len, 0, 1));
}

/* preadv2/readv: one locked pass, so the pieces see one state of the file;
 * a short piece ends the transfer, as the kernel's would. */
static ssize_t do_preadv(int fd, const struct iovec *iov, int cnt, int64_t off, int flags)
{
    struct sfile *f = sfile_get(fd);
    size_t total;
    if (f == NULL || (f->o->flags & O_ACCMODE) == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    if (iov_check(iov, cnt, flags, &total) != 0)
        return -1;
    if (f->is_dir) {
        errno = EISDIR;
        return -1;
    }
    int advance = off == -1;
    if (advance)
        off = (int64_t)f->o->off;
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    uint64_t done = 0;
    for (int i = 0; i < cnt; i++) {
        ssize_t n = do_pread(fd, iov[i].iov_base, iov[i].iov_len, off + (int64_t)done, 0);
        if (n < 0) {
            if (done == 0)
                return -1;
            break;
        }
        done += (uint64_t)n;
        if ((size_t)n < iov[i].iov_len)
            break;
    }
    if (advance)
        f->o->off = (uint64_t)off + done;
    return (ssize_t)done;
}

ssize_t strata_preadv2(int fd, const struct iovec *iov, int cnt, int64_t off, int flags)
{
    return LOCKED(do_preadv(fd, iov, cnt, off, flags));
}

ssize_t strata_readv(int fd, const struct iovec *iov, int cnt)
{
    return LOCKED(do_preadv(fd, iov, cnt, -1, 0));
}

/* Credits taken at once: what the log can carry to its digest threshold
 * (at least CREDIT_CHUNK), so a writer asks about once per log cycle, right
 * after a reset, when the digest thread is idle. */
static uint64_t credit_chunk(void)
{
    uint64_t n = G.sb->log_bytes / 100 * G.sb->digest_pct / STRATA_BLOCK;
    return n > CREDIT_CHUNK ? n : CREDIT_CHUNK;
}

/* Reserve the blocks that digesting a write of [off, off+len) may allocate. */
int reserve(struct sfile *f, uint64_t off, uint64_t len)
{
    /* Without the pool lock, this process's digest thread may be applying
     * to the block map meanwhile (bmap never follows an invalid pointer); a
     * block it fills was charged by the write that logged it.  Grabbing
     * credits below recounts under the lock. */
    uint64_t need = blocks_needed(f->ino, f->gen, file_size(f->ino, f->gen), off, len);
    if (need <= G.credits_left) {
        G.credits_left -= need;
        return 0;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (strata_pool_lock() != 0)
            return -1;
        need = blocks_needed(f->ino, f->gen, file_size(f->ino, f->gen), off, len);
        if (need <= G.credits_left) {
            G.credits_left -= need;
            strata_pool_unlock();
            return 0;
        }
        uint64_t held = 0;
        for (uint32_t i = 0; i < G.sb->nslots; i++)
            held += G.slots[i].owner_pid ? G.slots[i].credits : 0;
        uint64_t free = strata_free_blocks(); /* the backing file system's room too */
        uint64_t avail = free > held ? free - held : 0;
        uint64_t grab = need - G.credits_left;
        grab = grab < credit_chunk() ? credit_chunk() : grab;
        if (grab > avail)
            grab = avail;
        if (G.credits_left + grab >= need) {
            G.slots[G.slot].credits += grab;
            G.credits_left += grab - need;
            strata_pool_unlock();
            return 0;
        }
        if (attempt == 0)
            digest_slot(G.slot); /* returns our credits and frees coalesced space */
        strata_pool_unlock();
    }
    kb_stats_add(G.c.enospc, 1);
    errno = ENOSPC;
    return -1;
}

static struct strata_entry *append_or_digest(struct strata_entry *h, const void *p, size_t plen)
{
    struct strata_entry *e = log_append(h, p, plen);
    if (e == NULL && errno == ENOSPC && digest_own() == 0)
        e = log_append(h, p, plen);
    return e;
}

void maybe_digest(void)
{
    if (G.slots[G.slot].digest_request) /* `strata digest` asked: served by this write */
        digest_own();
    else if (bg_enabled()) {
        if (bg_wanted())
            bg_kick(); /* digest_bg.c; the writer digests itself only when its log is full */
    } else if (G.tail * 100 > G.sb->log_bytes * G.sb->digest_pct)
        digest_own();
}

static int do_ftruncate(int fd, int64_t size)
{
    struct sfile *f = writable(fd);
    if (f == NULL) {
        if (errno == EBADF && sfile_get(fd))
            errno = EINVAL; /* Linux: fd not open for writing */
        return -1;
    }
    if (size < 0 || f->is_dir) {
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)size > STRATA_MAX_FILE_BYTES) {
        errno = EFBIG;
        return -1;
    }
    struct strata_entry h = {.kind = STRATA_E_TRUNCATE, .ino = f->ino, .gen = f->gen, .len = (uint64_t)size};
    if (append_or_digest(&h, NULL, 0) == NULL)
        return -1;
    pend_add(f->ino, f->gen, STRATA_E_TRUNCATE, 0, (uint64_t)size, NULL);
    if (G.inodes[f->ino].mapped)
        shadow_after_truncate(f->ino, f->gen, (uint64_t)size);
    if (f->shared)
        digest_own(); /* ordered with the other holders' writes, as a write (libfs_write.c) */
    strata_publish();
    maybe_digest();
    return 0;
}

int strata_ftruncate(int fd, int64_t size)
{
    return LOCKED(do_ftruncate(fd, size));
}

static int64_t do_lseek(int fd, int64_t off, int whence)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    if (whence != SEEK_SET && whence != SEEK_CUR && see_foreign_writes(f->ino) != 0)
        return -1;
    int64_t size = (int64_t)file_size(f->ino, f->gen), pos;
    switch (whence) {
    case SEEK_SET: pos = off; break;
    case SEEK_CUR: pos = (int64_t)f->o->off + off; break;
    case SEEK_END:
        if (f->is_dir) { /* as tmpfs/ext4 directories */
            errno = EINVAL;
            return -1;
        }
        pos = size + off;
        break;
    case SEEK_DATA:
    case SEEK_HOLE:
        if (off < 0 || off >= size) {
            errno = ENXIO;
            return -1;
        }
        pos = whence == SEEK_DATA ? off : size;
        break;
    default: errno = EINVAL; return -1;
    }
    if (pos < 0 || (uint64_t)pos > STRATA_MAX_FILE_BYTES) { /* Linux: past s_maxbytes too */
        errno = EINVAL;
        return -1;
    }
    f->o->off = (uint64_t)pos;
    return pos;
}

int64_t strata_lseek(int fd, int64_t off, int whence)
{
    return LOCKED(do_lseek(fd, off, whence));
}

int strata_fsync(int fd)
{
    if (!strata_is_fd(fd)) {
        errno = EBADF;
        return -1;
    }
    /* every logged op is already persisted: fsync writes back mapped
     * stores (mmap_shadow.c) and counts */
    struct sfile *f = sfile_get(fd);
    if (f && G.inodes[f->ino].mapped && shadow_sync_ino(f->ino, f->gen) != 0)
        return -1;
    kb_stats_add(G.c.fsyncs, 1);
    return 0;
}
