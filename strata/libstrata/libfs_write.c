/*
 * LibFS write path, shared by write, pwrite, writev, pwritev(2) and
 * strata_write_ref: the checks, then a plan of pieces, then one log
 * transaction.
 *
 * Pieces: a source range of at least STRATA_REF_MIN bytes inside a
 * registered NVM map (libfs_ref.c) is logged as a reference (its extent is
 * persisted and checksummed, the entry holds only {pool offset, length,
 * checksum}); everything else is logged inline.  A range inside a map that
 * has to go inline anyway is counted as a fallback, with its reason.
 *
 * Transactions: every entry but the last carries STRATA_E_MORE, and the scan
 * (log.c) applies them only once the closing entry is valid, so a crash
 * leaves all of a call or none of it.  Space for the whole transaction is
 * found before its first entry (no digest can run in the middle of one).  A
 * call whose log footprint exceeds the log cannot be one transaction: it is
 * logged in quarter-log transactions (a crash may then keep a prefix).
 */
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)
#define RWF_KNOWN (RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND)
#define INLINE_POOL_OFF UINT64_MAX

struct piece {
    const char *src;   /* inline source (NULL for a reference) */
    uint64_t len;
    uint64_t pool_off; /* reference target, or INLINE_POOL_OFF */
    uint32_t crc;      /* a reference's extent checksum (log_txn) */
};

struct plan {
    struct piece *p;         /* local, or the heap once more pieces are needed */
    uint32_t n, cap;
    uint32_t nrefs;
    struct piece local[8];   /* a write call rarely has more: no malloc per write */
};

struct sfile *writable(int fd)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL || (f->o->flags & O_ACCMODE) == O_RDONLY) {
        errno = EBADF;
        return NULL;
    }
    /* the lease: one process at a time writes through a shared OFD */
    if (ns_claim() != 0 || sfile_may_write(f) != 0)
        return NULL;
    return f;
}

int iov_check(const struct iovec *iov, int cnt, int flags, size_t *total)
{
    if (cnt < 0 || cnt > IOV_MAX || (cnt > 0 && iov == NULL)) {
        errno = EINVAL;
        return -1;
    }
    if (flags & ~RWF_KNOWN) {
        errno = EOPNOTSUPP;
        return -1;
    }
    size_t sum = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - sum) {
            errno = EINVAL;
            return -1;
        }
        sum += iov[i].iov_len;
    }
    *total = sum;
    return 0;
}

static uint64_t max_inline(void)
{
    return G.sb->log_bytes / 4 - sizeof(struct strata_entry);
}

static uint64_t footprint(const struct piece *p)
{
    return ALIGN64(sizeof(struct strata_entry) +
                   (p->pool_off == INLINE_POOL_OFF ? p->len : sizeof(struct strata_ref)));
}

static void plan_init(struct plan *pl)
{
    pl->p = pl->local;
    pl->n = pl->nrefs = 0;
    pl->cap = sizeof(pl->local) / sizeof(pl->local[0]);
}

static void plan_free(struct plan *pl)
{
    if (pl->p != pl->local)
        free(pl->p);
}

static int plan_add(struct plan *pl, const char *src, uint64_t len, uint64_t pool_off)
{
    if (pl->n == pl->cap) {
        struct piece *p = malloc(2 * pl->cap * sizeof(*p));
        if (p == NULL)
            return -1;
        memcpy(p, pl->p, pl->n * sizeof(*p));
        plan_free(pl);
        pl->p = p;
        pl->cap *= 2;
    }
    pl->p[pl->n++] = (struct piece){.src = src, .len = len, .pool_off = pool_off};
    pl->nrefs += pool_off != INLINE_POOL_OFF;
    return 0;
}

static void fallback(uint64_t *reason)
{
    kb_stats_add(G.c.ref_fallbacks, 1);
    kb_stats_add(reason, 1);
}

/* Split one source buffer into reference and inline pieces. */
static int plan_source(struct plan *pl, const char *src, size_t len)
{
    while (len > 0) {
        uint64_t pool_off;
        size_t n = nvm_span(src, len, &pool_off);
        if (pool_off != INLINE_POOL_OFF && n < STRATA_REF_MIN) {
            fallback(G.c.ref_fallback_small); /* too short to be worth a reference */
            pool_off = INLINE_POOL_OFF;
        } else if (pool_off != INLINE_POOL_OFF && refs_reserve(pl->nrefs + 1) != 0) {
            fallback(G.c.ref_fallback_nomem); /* could not track it for strata_ref_busy */
            pool_off = INLINE_POOL_OFF;
        }
        if (pool_off != INLINE_POOL_OFF) {
            if (plan_add(pl, NULL, n, pool_off) != 0)
                return -1;
        } else {
            for (size_t at = 0; at < n;) { /* an inline entry never exceeds a quarter log */
                uint64_t k = n - at < max_inline() ? n - at : max_inline();
                if (plan_add(pl, src + at, k, INLINE_POOL_OFF) != 0)
                    return -1;
                at += k;
            }
        }
        src += n;
        len -= n;
    }
    return 0;
}

/* Forget a transaction that could not be completed (its first entry loses
 * its commit marker, later appends overwrite it). */
static void txn_abort(uint64_t start)
{
    if (G.tail > start) {
        struct strata_entry *e = (struct strata_entry *)(G.logs + (uint64_t)G.slot * G.sb->log_bytes + start);
        e->commit = 0;
        strata_persist(e, sizeof(*e));
        G.tail = start;
    }
}

/* Log pieces p[0..n) as one transaction writing [off, off + bytes). */
static int log_txn(struct sfile *f, struct piece *p, uint32_t n, uint64_t off, uint64_t bytes,
                   uint64_t fp)
{
    /* digest first: it resets the slot's block credits */
    if (G.tail + fp > G.sb->log_bytes) {
        kb_stats_add(G.c.log_full, 1); /* the writer waits for a digest */
        if (digest_own() != 0)
            return -1;
    }
    if (reserve(f, off, bytes) != 0)
        return -1;
    /* each referenced extent is durable before the entry naming it: summed
     * and flushed in one pass, one fence for all */
    int refs = 0;
    for (uint32_t k = 0; k < n; k++)
        if (p[k].pool_off != INLINE_POOL_OFF) {
            p[k].crc = strata_persist_csum_nodrain(G.base + p[k].pool_off, p[k].len, G.sb->fs_id);
            refs = 1;
        }
    if (refs)
        strata_drain();
    uint64_t start = G.tail, at = off;
    for (uint32_t k = 0; k < n; k++) {
        int ref = p[k].pool_off != INLINE_POOL_OFF;
        struct strata_entry h = {.kind = ref ? STRATA_E_WRITE_REF : STRATA_E_WRITE,
                                 .flags = k + 1 < n ? STRATA_E_MORE : 0,
                                 .ino = f->ino, .gen = f->gen, .off = at, .len = p[k].len};
        struct strata_ref r;
        if (ref)
            r = (struct strata_ref){.pool_off = p[k].pool_off, .len = p[k].len, .crc = p[k].crc};
        if (log_append(&h, ref ? (const void *)&r : p[k].src, ref ? sizeof(r) : p[k].len) == NULL) {
            txn_abort(start);
            return -1;
        }
        at += p[k].len;
    }
    /* committed: the overlay, the outstanding references, the counters */
    const char *log = G.logs + (uint64_t)G.slot * G.sb->log_bytes;
    for (uint64_t o = start; o < G.tail;) {
        const struct strata_entry *e = (const struct strata_entry *)(log + o);
        pend_add(f->ino, f->gen, e->kind, e->off, e->len, entry_data(e));
        if (G.inodes[f->ino].mapped) /* coherence with mappings */
            shadow_after_write(f->ino, f->gen, e->off, entry_data(e), e->len);
        if (e->kind == STRATA_E_WRITE_REF) {
            refs_add(((const struct strata_ref *)entry_payload(e))->pool_off, e->len);
            kb_stats_add(G.c.ref_writes, 1);
            kb_stats_add(G.c.ref_bytes, e->len);
        } else {
            kb_stats_add(G.c.inline_bytes, e->len);
            if (e->len >= STRATA_REF_MIN)   /* a large copy into the log */
                kb_stats_add(G.c.inline_large_bytes, e->len);
        }
        o += e->entry_len;
    }
    return 0;
}

/* Log the plan in as few transactions as fit the log (one when it fits). */
static ssize_t log_plan(struct sfile *f, struct plan *pl, uint64_t off)
{
    uint64_t total_fp = 0;
    for (uint32_t i = 0; i < pl->n; i++)
        total_fp += footprint(&pl->p[i]);
    uint64_t budget = total_fp <= G.sb->log_bytes ? total_fp : G.sb->log_bytes / 4;
    uint64_t done = 0;
    for (uint32_t i = 0, j; i < pl->n; i = j) {
        uint64_t fp = 0, bytes = 0;
        for (j = i; j < pl->n && (j == i || fp + footprint(&pl->p[j]) <= budget); j++) {
            fp += footprint(&pl->p[j]);
            bytes += pl->p[j].len;
        }
        if (log_txn(f, &pl->p[i], j - i, off + done, bytes, fp) != 0)
            return done ? (ssize_t)done : -1;
        done += bytes;
    }
    return (ssize_t)done;
}

/*
 * The one write: the fd must be writable by this process and not a
 * directory; O_APPEND (or RWF_APPEND) writes at the end, even through pwrite;
 * advance: at the file position, which moves past the bytes written.  The
 * source is iov[0..cnt), or the single reference ref (strata_write_ref).
 */
static ssize_t do_write(int fd, const struct iovec *iov, int cnt, int64_t off, int advance, int flags,
                        const struct piece *ref)
{
    struct sfile *f = writable(fd);
    size_t total = ref ? ref->len : 0;
    if (f == NULL || (!ref && iov_check(iov, cnt, flags, &total) != 0))
        return -1;
    if (f->is_dir) {
        errno = EISDIR;
        return -1;
    }
    /* A write through a description other processes hold too (fork, exec,
     * a shell's redirection), or an append that another process may make to
     * the file at the same time (lock-aware and shared-writer processes hold
     * no lease, locks.c), is ordered with theirs as the kernel's inode lock
     * orders them.  Under the pool lock: publish this process's earlier
     * writes, take the end (an append) or the shared position, log, and
     * publish this write before another process can write.  Without it, a
     * process appended at the end it saw and wrote at offsets it had read
     * from its own overlay: the lease holder's undigested writes went to the
     * same offsets as another's and overwrote them at digest. */
    int append = (f->o->flags & O_APPEND) || (flags & RWF_APPEND);
    int ordered = f->shared || (append && strata_lock_aware);
    if (ordered) {
        if (strata_pool_lock() != 0)
            return -1;
        if (digest_own() != 0) {
            strata_pool_unlock();
            return -1;
        }
    }
    ssize_t done = -1;
    if (append)
        off = (int64_t)file_size(f->ino, f->gen);
    else if (advance)
        off = (int64_t)f->o->off;
    if (off < 0) {
        errno = EINVAL;
        goto unlock;
    }
    if (total == 0) {
        done = 0;
        goto unlock;
    }
    if ((uint64_t)off >= STRATA_MAX_FILE_BYTES) {
        errno = EFBIG;
        goto unlock;
    }
    /* as Linux: a write that would pass the largest file writes what fits */
    size_t room = STRATA_MAX_FILE_BYTES - (uint64_t)off < total ? STRATA_MAX_FILE_BYTES - (uint64_t)off
                                                                 : total;
    struct plan pl;
    plan_init(&pl);
    if (ref) {
        if (refs_reserve(1) != 0 || plan_add(&pl, NULL, room, ref->pool_off) != 0)
            goto out;
    } else {
        for (int i = 0; i < cnt && room > 0; i++) {
            size_t n = iov[i].iov_len < room ? iov[i].iov_len : room;
            if (plan_source(&pl, iov[i].iov_base, n) != 0)
                goto out;
            room -= n;
        }
    }
    done = log_plan(f, &pl, (uint64_t)off);
    if (done > 0 && advance)
        f->o->off = (uint64_t)off + (uint64_t)done;
    if (ordered) {
        int e = errno;
        if (done > 0)
            digest_own(); /* a failure keeps the log for a later digest, as at any threshold */
        strata_pool_unlock();
        ordered = 0;
        errno = e;
    }
    if (done > 0) {
        strata_publish(); /* lock-aware with a shared map: visible at once (locks.c) */
        maybe_digest();
        if (refs_over_trigger())
            bg_kick_refs();   /* the receive stack forces a digest itself if it cannot wait */
    }
out:
    plan_free(&pl);
unlock:
    if (ordered)
        strata_pool_unlock();
    return done;
}

ssize_t strata_pwrite(int fd, const void *buf, size_t len, int64_t off)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return LOCKED(do_write(fd, &v, 1, off, 0, 0, NULL));
}

ssize_t strata_write(int fd, const void *buf, size_t len)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return LOCKED(do_write(fd, &v, 1, 0, 1, 0, NULL));
}

ssize_t strata_writev(int fd, const struct iovec *iov, int cnt)
{
    return LOCKED(do_write(fd, iov, cnt, 0, 1, 0, NULL));
}

ssize_t strata_pwritev2(int fd, const struct iovec *iov, int cnt, int64_t off, int flags)
{
    return LOCKED(do_write(fd, iov, cnt, off, off == -1, flags, NULL));
}

/* Contract 3: the caller stored the data in the ref area (after its table
 * page) and keeps it unchanged until digest. */
static ssize_t do_write_ref(int fd, uint64_t pool_off, size_t len, int64_t off, int advance)
{
    uint64_t lo = G.sb->off_ref + STRATA_REF_TABLE, room = G.sb->ref_bytes - STRATA_REF_TABLE;
    if (strata_is_fd(fd) && (pool_off < lo || len > room || pool_off - lo > room - len)) {
        errno = EINVAL; /* a reference must stay inside the ref area, off its table */
        return -1;
    }
    struct piece ref = {.len = len, .pool_off = pool_off};
    return do_write(fd, NULL, 0, off, advance, 0, &ref);
}

ssize_t strata_pwrite_ref(int fd, uint64_t pool_off, size_t len, int64_t off)
{
    return LOCKED(do_write_ref(fd, pool_off, len, off, 0));
}

ssize_t strata_write_ref(int fd, uint64_t pool_off, size_t len)
{
    return LOCKED(do_write_ref(fd, pool_off, len, 0, 1));
}
