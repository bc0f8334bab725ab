/*
 * Shadows: the page cache of Strata files for mmap.
 *
 * A MAP_SHARED mapping of a Strata file maps its shadow, a file in /dev/shm
 * named from the pool's fs_id, the inode and its generation, so every
 * process of the pool that maps the file maps the same pages (stores are
 * coherent between processes, as sqlite's -shm needs).  The shadow is
 * filled from the file's Strata contents by the first process that maps it,
 * under the pool lock.
 *
 * Liveness: every process using a shadow holds flock(LOCK_SH) on it; the
 * kernel drops it when the process dies.  Under the pool lock, a process
 * that gets LOCK_EX knows nobody alive uses the shadow: its contents are
 * not trusted (a dead process's stores that were never written back are
 * not durable, as pages in the kernel's cache are not before msync), so it
 * is refilled from Strata or unlinked.
 *
 * The inode's `mapped` hint says a shadow may exist.  While it is set,
 * write(), truncate and read() of the file by any process go through the
 * shadow too (the process attaches to it), so write() and mapped readers,
 * and mapped stores and read(), are coherent.  A process attaching applies
 * its own undigested writes (its read overlay) to the shadow.
 *
 * Write-back: the shadow is compared with Strata's contents of the file and
 * the span from the first to the last differing page is written through
 * Strata's normal write path (one transaction) with the process's
 * write-back fd (a dup of the fd that was mapped, holding the lease while a
 * writable mapping lives).  It runs on msync, munmap, fsync/fdatasync of
 * any fd of the file, before exec and at exit.  MAP_PRIVATE mappings are
 * private anonymous copies of the contents.
 */
#include "shim.h"
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096UL
#define CHUNK (1UL << 20)

struct shadow {
    uint32_t ino, gen;
    int fd;           /* kernel fd of the shadow, flock(LOCK_SH) held */
    int maps;         /* mappings of it in this process */
    int wmaps;        /* of which writable (MAP_SHARED of an O_RDWR fd) */
    int wfd;          /* Strata fd kept for write-back while wmaps > 0 */
    struct shadow *next;
};

struct mapping {
    char *addr;
    size_t len;
    struct shadow *s;
    int writable;
    struct mapping *next;
};

static struct shadow *shadows;
static struct mapping *mappings;
static int bypass;      /* write-back and fill: read Strata itself, don't echo into the shadow */
static int swept, atexit_done;

void shadow_name(char *out, size_t len, uint32_t ino, uint32_t gen, const char *kind)
{
    snprintf(out, len, "/dev/shm/strata.%016" PRIx64 ".%" PRIu32 ".%" PRIu32 ".%s", G.sb->fs_id, ino, gen,
             kind);
}

static struct shadow *shadow_find(uint32_t ino, uint32_t gen)
{
    for (struct shadow *s = shadows; s; s = s->next)
        if (s->ino == ino && s->gen == gen)
            return s;
    return NULL;
}

static void hint_set(uint32_t ino, int on)
{
    G.inodes[ino].mapped = (uint8_t)on;
    strata_persist(&G.inodes[ino].mapped, 1);
}

static int sh_flock(int fd, int op) { return (int)syscall(SYS_flock, fd, op); }

static void sweep_shadow(const char *path, unsigned ino, unsigned gen, const char *kind)
{
    if (strcmp(kind, "map") != 0)
        return;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    if (sh_flock(fd, LOCK_EX | LOCK_NB) == 0) {   /* no live user */
        if (ino < G.sb->ninodes && !shadow_find(ino, gen))
            hint_set(ino, 0);
        syscall(SYS_unlinkat, AT_FDCWD, path, 0);
    }
    syscall(SYS_close, fd);
}

/* Unused shadows of this pool (their users died): unlink them; and the lock
 * files of freed inodes.  Pool lock held. */
static void sweep(void)
{
    strata_shm_each(sweep_shadow);
    locks_sweep();
}

/* Copy this process's Strata view of the file into the shadow (fill). */
static int fill(struct shadow *s, int sfd)
{
    uint64_t size = file_size(s->ino, s->gen);
    if (syscall(SYS_ftruncate, s->fd, 0) != 0 || syscall(SYS_ftruncate, s->fd, (off_t)size) != 0)
        return -1;
    char *buf = malloc(CHUNK);
    if (buf == NULL)
        return -1;
    bypass++;
    int rc = 0;
    for (uint64_t at = 0; at < size && rc == 0;) {
        ssize_t n = strata_pread(sfd, buf, CHUNK, (int64_t)at);
        if (n <= 0 || syscall(SYS_pwrite64, s->fd, buf, (size_t)n, (off_t)at) != n)
            rc = -1;
        at += n > 0 ? (uint64_t)n : 0;
    }
    bypass--;
    free(buf);
    return rc;
}

/* A shadow another process filled: add our undigested writes to it. */
static void apply_overlay(struct shadow *s)
{
    struct pend_inode *p = G.pend[s->ino];
    for (uint32_t i = 0; p && p->gen == s->gen && i < p->nops; i++) {
        struct pend_op *o = &p->ops[i];
        if (o->kind == STRATA_E_TRUNCATE)
            syscall(SYS_ftruncate, s->fd, (off_t)o->len);
        else
            syscall(SYS_pwrite64, s->fd, o->data, (size_t)o->len, (off_t)o->off);
    }
}

/*
 * The shadow of (ino, gen) in this process: attach to a live one, or with
 * sfd >= 0 (mmap) create and fill it.  Without sfd a stale or missing
 * shadow clears the hint and gives NULL (errno 0).
 */
static struct shadow *shadow_get(uint32_t ino, uint32_t gen, int sfd)
{
    struct shadow *s = shadow_find(ino, gen);
    if (s != NULL)
        return s;
    if (strata_pool_lock() != 0)
        return NULL;
    if (!swept) {
        swept = 1;
        sweep();
    }
    char name[160];
    shadow_name(name, sizeof(name), ino, gen, "map");
    int fd = strata_private_fd_high(
        (int)syscall(SYS_openat, AT_FDCWD, name, O_RDWR | O_CLOEXEC | (sfd >= 0 ? O_CREAT : 0), 0600));
    int e = errno;
    if (fd >= 0 && (s = calloc(1, sizeof(*s))) == NULL)
        e = ENOMEM;
    if (s == NULL) {
        if (fd >= 0)
            syscall(SYS_close, fd);
        else if (e == ENOENT && sfd < 0) {
            hint_set(ino, 0);
            e = 0;
        }
        strata_pool_unlock();
        errno = e;
        return NULL;
    }
    *s = (struct shadow){.ino = ino, .gen = gen, .fd = fd, .wfd = -1};
    if (sh_flock(fd, LOCK_EX | LOCK_NB) == 0) { /* nobody alive uses it */
        if (sfd < 0 || fill(s, sfd) != 0) {
            e = sfd < 0 ? 0 : errno ? errno : EIO;
            syscall(SYS_unlinkat, AT_FDCWD, name, 0);
            hint_set(ino, 0);
            syscall(SYS_close, fd);
            free(s);
            strata_pool_unlock();
            errno = e;
            return NULL;
        }
        hint_set(ino, 1);
        kb_stats_add(G.c.shadow_files, 1);
    } else {
        apply_overlay(s);
    }
    sh_flock(fd, LOCK_SH); /* under the pool lock: nobody can slip in between */
    strata_pool_unlock();
    s->next = shadows;
    shadows = s;
    return s;
}

/* This process stops using the shadow; the last user unlinks it. */
static void shadow_put(struct shadow *s)
{
    for (struct shadow **pp = &shadows; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (strata_pool_lock() == 0) {
        if (sh_flock(s->fd, LOCK_EX | LOCK_NB) == 0) {
            char name[160];
            shadow_name(name, sizeof(name), s->ino, s->gen, "map");
            syscall(SYS_unlinkat, AT_FDCWD, name, 0);
            hint_set(s->ino, 0);
        }
        strata_pool_unlock();
    }
    syscall(SYS_close, s->fd);
    free(s);
}

static struct shadow *attached(uint32_t ino, uint32_t gen)
{
    if (G.inodes == NULL || !G.inodes[ino].mapped || bypass)
        return NULL;
    return shadow_get(ino, gen, -1);
}

void shadow_after_write(uint32_t ino, uint32_t gen, uint64_t off, const void *data, uint64_t len)
{
    struct shadow *s = attached(ino, gen);
    if (s)
        syscall(SYS_pwrite64, s->fd, data, (size_t)len, (off_t)off);
}

void shadow_after_truncate(uint32_t ino, uint32_t gen, uint64_t size)
{
    struct shadow *s = attached(ino, gen);
    if (s)
        syscall(SYS_ftruncate, s->fd, (off_t)size);
}

ssize_t shadow_pread(uint32_t ino, uint32_t gen, void *buf, size_t len, uint64_t off)
{
    struct shadow *s = attached(ino, gen);
    if (s == NULL)
        return -2;
    return (ssize_t)syscall(SYS_pread64, s->fd, buf, len, (off_t)off);
}

/* Bytes of the file in the shadow that differ from Strata's: write the span
 * of differing pages through Strata (one write, one transaction). */
static int writeback(struct shadow *s)
{
    if (s->wfd < 0)
        return 0;
    struct stat st;
    if (syscall(SYS_fstat, s->fd, &st) != 0)
        return -1;
    uint64_t size = (uint64_t)st.st_size, lo = UINT64_MAX, hi = 0;
    char *a = malloc(CHUNK), *b = malloc(CHUNK);
    int rc = a && b ? 0 : (errno = ENOMEM, -1);
    bypass++;
    if (rc == 0 && file_size(s->ino, s->gen) != size)
        rc = strata_ftruncate(s->wfd, (int64_t)size);
    for (uint64_t at = 0; rc == 0 && at < size; at += CHUNK) {
        size_t n = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
        ssize_t ra = (ssize_t)syscall(SYS_pread64, s->fd, a, n, (off_t)at);
        ssize_t rb = strata_pread(s->wfd, b, n, (int64_t)at);
        if (ra != (ssize_t)n || rb < 0) {
            rc = -1;
            break;
        }
        if (rb < (ssize_t)n)
            memset(b + rb, 0, n - (size_t)rb);
        for (size_t p = 0; p < n; p += PAGE) {
            size_t k = n - p < PAGE ? n - p : PAGE;
            if (memcmp(a + p, b + p, k) != 0) {
                lo = lo == UINT64_MAX ? at + p : lo;
                hi = at + p + k;
            }
        }
    }
    if (rc == 0 && lo != UINT64_MAX) {
        char *span = malloc(hi - lo);
        if (span == NULL || syscall(SYS_pread64, s->fd, span, hi - lo, (off_t)lo) != (long)(hi - lo) ||
            strata_pwrite(s->wfd, span, hi - lo, (int64_t)lo) != (ssize_t)(hi - lo))
            rc = -1;
        else {
            kb_stats_add(G.c.writebacks, 1);
            kb_stats_add(G.c.writeback_bytes, hi - lo);
        }
        free(span);
    }
    bypass--;
    free(a);
    free(b);
    return rc;
}

int shadow_sync_ino(uint32_t ino, uint32_t gen)
{
    pthread_mutex_lock(&G.mu);
    struct shadow *s = shadow_find(ino, gen);
    int rc = s ? writeback(s) : 0;
    pthread_mutex_unlock(&G.mu);
    return rc;
}

void shadow_writeback_all(void)
{
    pthread_mutex_lock(&G.mu);
    for (struct shadow *s = shadows; s; s = s->next)
        if (writeback(s) != 0)
            fprintf(stderr, "libstrata: write-back of mapped inode %u failed: %s\n", s->ino, strerror(errno));
    pthread_mutex_unlock(&G.mu);
}

/* Exit: write back, then leave every shadow (the last user unlinks it). */
static void at_exit(void)
{
    shadow_writeback_all();
    pthread_mutex_lock(&G.mu);
    while (mappings != NULL) { /* later munmaps (other exit handlers) go to libc */
        struct mapping *m = mappings;
        mappings = m->next;
        free(m);
    }
    while (G.base != NULL && shadows != NULL)
        shadow_put(shadows);
    pthread_mutex_unlock(&G.mu);
}

/* The last fd of the inode in this process closed: leave a shadow no
 * mapping uses; a writer that was not attached adds its writes first. */
void shadow_on_close(uint32_t ino, uint32_t gen, int was_writable)
{
    struct shadow *s = shadow_find(ino, gen);
    if (s == NULL && was_writable && G.inodes[ino].mapped && !bypass)
        s = shadow_get(ino, gen, -1); /* applies our overlay */
    if (s && s->maps == 0)
        shadow_put(s);
}

/* A forked child shares the parent's shadow descriptions, and so their
 * flock: give it its own, so its leaving cannot look like the last user's. */
static void atfork_child(void)
{
    for (struct shadow *s = shadows; s; s = s->next) {
        char name[160];
        shadow_name(name, sizeof(name), s->ino, s->gen, "map");
        int fd = (int)syscall(SYS_openat, AT_FDCWD, name, O_RDWR | O_CLOEXEC);
        if (fd >= 0 && sh_flock(fd, LOCK_SH) == 0 && syscall(SYS_dup3, fd, s->fd, O_CLOEXEC) >= 0) {
            syscall(SYS_close, fd);
            sh_flock(s->fd, LOCK_SH);
        } else if (fd >= 0) {
            syscall(SYS_close, fd);
        }
    }
}

__attribute__((constructor)) static void shadow_init(void) { pthread_atfork(NULL, NULL, atfork_child); }

int shadow_has_maps(void) { return __atomic_load_n(&mappings, __ATOMIC_RELAXED) != NULL; }

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    struct sfile *f = sfile_get(fd);
    int type = flags & MAP_TYPE, acc = f ? f->o->flags & O_ACCMODE : 0;
    if (f == NULL) {
        errno = EBADF;
        return MAP_FAILED;
    }
    if (len == 0 || off < 0 || (off & (PAGE - 1)) || (type != MAP_SHARED && type != MAP_PRIVATE &&
                                                        type != MAP_SHARED_VALIDATE)) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    if (f->is_dir) {
        errno = ENODEV;
        return MAP_FAILED;
    }
    if (acc == O_WRONLY || (type != MAP_PRIVATE && (prot & PROT_WRITE) && acc != O_RDWR)) {
        errno = EACCES;
        return MAP_FAILED;
    }
    kb_stats_add(G.c.maps, 1);
    if (type == MAP_PRIVATE) { /* a private copy of the contents */
        char *p = REAL(mmap)(addr, len, prot | PROT_WRITE, (flags & ~MAP_TYPE) | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return p;
        for (size_t at = 0; at < len;) {
            ssize_t n = strata_pread(fd, p + at, len - at, (int64_t)off + (int64_t)at);
            if (n < 0) {
                int e = errno;
                REAL(munmap)(p, len);
                errno = e;
                return MAP_FAILED;
            }
            if (n == 0)
                break;
            at += (size_t)n;
        }
        if (!(prot & PROT_WRITE))
            REAL(mprotect)(p, len, prot);
        return p;
    }
    struct mapping *m = calloc(1, sizeof(*m));
    struct shadow *s = m ? shadow_get(f->ino, f->gen, fd) : NULL;
    if (s == NULL) {
        int e = m == NULL ? ENOMEM : errno ? errno : EIO;
        free(m);
        errno = e;
        return MAP_FAILED;
    }
    int writable = acc == O_RDWR;
    if (writable && s->wfd < 0) {
        s->wfd = strata_dup(fd, -1); /* holds the write lease while the map lives */
        if (s->wfd >= 0)
            syscall(SYS_fcntl, s->wfd, F_SETFD, FD_CLOEXEC);
    }
    char *p = writable && s->wfd < 0 ? MAP_FAILED : REAL(mmap)(addr, len, prot, flags, s->fd, off);
    if (p == MAP_FAILED) {
        int e = errno;
        free(m);
        if (s->maps == 0 && G.opens[f->ino] == 0)
            shadow_put(s);
        errno = e;
        return MAP_FAILED;
    }
    *m = (struct mapping){.addr = p, .len = (len + PAGE - 1) & ~(PAGE - 1), .s = s, .writable = writable,
                          .next = mappings};
    s->maps++;
    s->wmaps += writable;
    mappings = m;
    if (!atexit_done) {
        atexit_done = 1;
        atexit(at_exit);
    }
    return p;
}

void *strata_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    pthread_mutex_lock(&G.mu);
    void *p = strata_ensure_attached() == 0 ? do_mmap(addr, len, prot, flags, fd, off) : MAP_FAILED;
    pthread_mutex_unlock(&G.mu);
    return p;
}

static int overlaps(const struct mapping *m, const char *a, size_t len)
{
    return a < m->addr + m->len && m->addr < a + len;
}

static void release_mapping(struct shadow *s, int writable)
{
    uint32_t ino = s->ino, gen = s->gen;
    s->maps--;
    s->wmaps -= writable;
    if (s->wmaps == 0 && s->wfd >= 0) {
        int wfd = s->wfd;
        s->wfd = -1;
        strata_close(wfd); /* its last close may leave the shadow already */
    }
    if ((s = shadow_find(ino, gen)) != NULL && s->maps == 0 && G.opens[ino] == 0)
        shadow_put(s);
}

/* Write back every shadow with a writable mapping in [a, a+len). */
static int writeback_range(const char *a, size_t len)
{
    int rc = 0;
    for (struct mapping *m = mappings; m; m = m->next)
        if (m->writable && overlaps(m, a, len) && writeback(m->s) != 0)
            rc = -1;
    return rc;
}

/* Write back the shadows mapped in [a, a+l), unmap (unless the caller
 * replaces the range itself) and drop or trim their records. */
static int forget_range(char *a, size_t l, int unmap)
{
    if (writeback_range(a, l) != 0)
        fprintf(stderr, "libstrata: munmap: write-back failed: %s\n", strerror(errno));
    int rc = unmap ? REAL(munmap)(a, l) : 0;
    if (rc == 0) {
        for (struct mapping **pp = &mappings; *pp;) {
            struct mapping *m = *pp;
            if (!overlaps(m, a, l)) {
                pp = &m->next;
                continue;
            }
            char *end = m->addr + m->len;
            int keep_lo = m->addr < a, keep_hi = end > a + l;
            if (keep_lo && keep_hi) { /* a hole in the middle: two mappings */
                struct mapping *hi = malloc(sizeof(*hi));
                if (hi) {
                    *hi = (struct mapping){.addr = a + l, .len = (size_t)(end - (a + l)), .s = m->s,
                                           .writable = m->writable, .next = m->next};
                    m->next = hi;
                    m->s->maps++;
                    m->s->wmaps += m->writable;
                }
                m->len = (size_t)(a - m->addr);
                pp = &m->next;
            } else if (keep_lo) {
                m->len = (size_t)(a - m->addr);
                pp = &m->next;
            } else if (keep_hi) {
                m->len = (size_t)(end - (a + l));
                m->addr = a + l;
                pp = &m->next;
            } else {
                *pp = m->next;
                release_mapping(m->s, m->writable);
                free(m);
            }
        }
    }
    return rc;
}

int strata_munmap(void *addr, size_t len)
{
    if (len == 0 || ((uintptr_t)addr & (PAGE - 1))) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&G.mu);
    int rc = forget_range(addr, (len + PAGE - 1) & ~(PAGE - 1), 1);
    pthread_mutex_unlock(&G.mu);
    return rc;
}

/* MAP_FIXED over [a, a+len): the mappings there are replaced (write back
 * and forget them, as munmap would). */
void strata_map_replaced(void *addr, size_t len)
{
    pthread_mutex_lock(&G.mu);
    forget_range(addr, (len + PAGE - 1) & ~(PAGE - 1), 0);
    pthread_mutex_unlock(&G.mu);
}

int strata_msync(void *addr, size_t len, int flags)
{
    pthread_mutex_lock(&G.mu);
    int rc = writeback_range(addr, len);
    pthread_mutex_unlock(&G.mu);
    if (rc != 0)
        return -1; /* the stores are still in the shadow; errno from the write */
    return REAL(msync)(addr, len, flags);
}

void *strata_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *new_addr)
{
    pthread_mutex_lock(&G.mu);
    struct mapping *m = mappings;
    while (m && m->addr != (char *)old)
        m = m->next;
    void *p = REAL(mremap)(old, oldlen, newlen, flags, new_addr);
    if (p != MAP_FAILED && m) {
        m->addr = p;
        m->len = (newlen + PAGE - 1) & ~(PAGE - 1);
    }
    pthread_mutex_unlock(&G.mu);
    return p;
}

/* A shared mapping of a file opened read-only must not become writable (the
 * shadow fd is read-write, so the kernel would allow it). */
int strata_mprotect(void *addr, size_t len, int prot)
{
    pthread_mutex_lock(&G.mu);
    int bad = 0;
    for (struct mapping *m = mappings; m; m = m->next)
        bad |= (prot & PROT_WRITE) && !m->writable && overlaps(m, addr, len);
    pthread_mutex_unlock(&G.mu);
    if (bad) {
        errno = EACCES;
        return -1;
    }
    return REAL(mprotect)(addr, len, prot);
}

int shadow_owns_fd_in(unsigned first, unsigned last)
{
    for (struct shadow *s = shadows; s; s = s->next)
        if ((unsigned)s->fd >= first && (unsigned)s->fd <= last)
            return 1;
    return 0;
}

int shadow_owns_fd(int fd)
{
    for (struct shadow *s = shadows; s; s = s->next)
        if (s->fd == fd)
            return 1;
    return 0;
}

void shadow_fd_moved(int from, int to)
{
    for (struct shadow *s = shadows; s; s = s->next)
        if (s->fd == from)
            s->fd = to;
}
