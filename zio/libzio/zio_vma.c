/*
 * Which memory is private anonymous: a small cache of address spans and
 * their mapping kind, so an elision need not probe residency with mincore.
 *
 * Why: an intermediate's pages must be absent so the program's first touch
 * faults into the handler.  MADV_DONTNEED makes private anonymous pages
 * absent, but a shared (shmem) page stays in its file and would be read
 * as it is.  Without knowing the kind, zio_elide.c asked mincore before
 * (is anything resident?) and after the MADV_DONTNEED (did it go?): three
 * system calls per elision.  Knowing the range is private anonymous, one
 * MADV_DONTNEED is enough.
 *
 * The kind is learned from mmap() as the program maps memory (interposed,
 * zio_interpose_mem.c) or, for memory mapped before or behind libzio (the
 * brk heap, glibc's internal mmaps of large chunks), from /proc/self/maps,
 * read with raw system calls (no shim below libzio may run under zio_lock).
 * Spans are forgotten when memory is unmapped, remapped or mapped anew
 * through the interposed calls (munmap, mremap, mmap, shmat, shmdt).  What
 * they miss: glibc's internal munmap of a large chunk leaves a stale span,
 * but only private anonymous memory can take its place unseen (glibc's own
 * mmaps of malloc chunks and thread stacks; its small shared mappings such
 * as sem_open's are never the target of a large copy); anything the
 * program maps goes through mmap and replaces the span.  Memory replaced
 * by a raw system call the program issues itself is not seen, as for every
 * other piece of libzio's state (zio_uffd.c, fill_unregistered).
 *
 * A generation count makes a /proc/self/maps read that raced with an
 * unmap or map of the same memory discard what it read.  vma_lock is a
 * leaf lock: taken alone (interposers) or inside zio_lock (elision).
 */
#include "zio_internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VMA_MAX 64

struct span {
    uintptr_t lo, hi;
    uint8_t anon;    /* private anonymous; else some other kind */
    uint64_t used;   /* last lookup (replacement order) */
};

static struct span spans[VMA_MAX];
static size_t nspans;
static uint64_t clock_, gen;
static pthread_mutex_t vma_lock = PTHREAD_MUTEX_INITIALIZER;

/* vma_lock held: drop every span touching [lo,hi) */
static void forget_locked(uintptr_t lo, uintptr_t hi)
{
    gen++;
    for (size_t k = 0; k < nspans;) {
        if (spans[k].lo < hi && lo < spans[k].hi)
            spans[k] = spans[--nspans];
        else
            k++;
    }
}

void vma_forget(uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi)
        return;
    pthread_mutex_lock(&vma_lock);
    forget_locked(pg_floor(lo), pg_ceil(hi));
    pthread_mutex_unlock(&vma_lock);
}

/* vma_lock held: record [lo,hi) of a kind, absorbing adjacent spans of the
 * same kind (a heap that grew, a registration that split a VMA). */
static void note_locked(uintptr_t lo, uintptr_t hi, int anon)
{
    for (size_t k = 0; k < nspans;) {
        struct span *s = &spans[k];
        if (s->lo < hi && lo < s->hi) {   /* overlapping: the new fact wins */
            if (s->anon == anon) {
                lo = s->lo < lo ? s->lo : lo;
                hi = s->hi > hi ? s->hi : hi;
            }
            spans[k] = spans[--nspans];
        } else if (s->anon == anon && (s->hi == lo || s->lo == hi)) {
            lo = s->lo < lo ? s->lo : lo;
            hi = s->hi > hi ? s->hi : hi;
            spans[k] = spans[--nspans];
        } else {
            k++;
        }
    }
    if (nspans == VMA_MAX) {
        size_t old = 0;
        for (size_t k = 1; k < nspans; k++)
            if (spans[k].used < spans[old].used)
                old = k;
        spans[old] = spans[--nspans];
    }
    spans[nspans++] = (struct span){ lo, hi, (uint8_t)anon, ++clock_ };
}

void vma_forget_all(void)
{
    pthread_mutex_lock(&vma_lock);
    gen++;
    nspans = 0;
    pthread_mutex_unlock(&vma_lock);
}

void vma_note_mapped(uintptr_t lo, uintptr_t hi, int anon)
{
    pthread_mutex_lock(&vma_lock);
    forget_locked(lo, hi);   /* whatever was there before is gone */
    note_locked(lo, hi, anon);
    pthread_mutex_unlock(&vma_lock);
}

/* vma_lock held: 1 [lo,hi) lies in one private anonymous span, 0 it
 * touches memory of another kind, -1 not known. */
static int lookup_locked(uintptr_t lo, uintptr_t hi)
{
    int known = -1;
    for (size_t k = 0; k < nspans; k++) {
        struct span *s = &spans[k];
        if (s->hi <= lo || hi <= s->lo)
            continue;
        s->used = ++clock_;
        if (!s->anon)
            return 0;
        if (s->lo <= lo && hi <= s->hi)
            known = 1;
    }
    return known;
}

/* ---- /proc/self/maps -------------------------------------------------- */

static uintptr_t hex(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return v;
        v = v * 16 + (uintptr_t)d;
    }
}

static const char *skip_field(const char *p)
{
    while (*p == ' ')
        p++;
    while (*p && *p != ' ')
        p++;
    return p;
}

/* One line "start-end perms offset dev inode   [path]": is it a private
 * anonymous mapping?  No inode, private, and no path or a name the kernel
 * gives anonymous memory ([heap], [stack], [anon:NAME]); shared anonymous
 * memory shows as "/dev/zero (deleted)" with an inode, a memfd as
 * "/memfd:...". */
static int parse_line(const char *line, uintptr_t *lo, uintptr_t *hi)
{
    const char *p = line;
    *lo = hex(&p);
    if (*p++ != '-')
        return -1;
    *hi = hex(&p);
    while (*p == ' ')
        p++;
    if (strlen(p) < 4)
        return -1;
    int priv = p[3] == 'p';
    p = skip_field(p);       /* perms */
    p = skip_field(p);       /* offset */
    p = skip_field(p);       /* dev */
    while (*p == ' ')
        p++;
    int inode0 = p[0] == '0' && (p[1] == ' ' || p[1] == '\0');
    p = skip_field(p);       /* inode */
    while (*p == ' ')
        p++;
    int anon_name = *p == '\0' || !strcmp(p, "[heap]") || !strcmp(p, "[stack]") ||
                    !strncmp(p, "[anon:", 6);
    return priv && inode0 && anon_name;
}

/* zio_lock held (the buffers are libzio's).  Learn the kinds of the
 * mappings overlapping [lo,hi) from /proc/self/maps; -1 when it cannot be
 * read.  Private anonymous mappings are learned as the whole run of
 * contiguous ones around [lo,hi): registration splits a heap or a large
 * malloc chunk into several VMAs, and the next copy usually lands in
 * another of them. */
static int learn(uintptr_t lo, uintptr_t hi)
{
    static char buf[4096], line[512];
    pthread_mutex_lock(&vma_lock);
    uint64_t g = gen;
    pthread_mutex_unlock(&vma_lock);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ctr_add(C_VMA_MAPS_READS, 1);
    struct { uintptr_t lo, hi; int anon; } seen[16];
    const int max = (int)(sizeof(seen) / sizeof(seen[0]));
    int ns = 0, done = 0;
    size_t ll = 0;
    uintptr_t rlo = 0, rhi = 0;   /* the run of contiguous private anonymous mappings */
    while (!done) {
        ssize_t got = syscall(SYS_read, fd, buf, sizeof(buf));
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got && !done; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof(line) - 1)
                    line[ll++] = buf[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            uintptr_t a, b;
            int anon = parse_line(line, &a, &b);
            if (anon < 0)
                continue;
            if (anon && rhi != 0 && a == rhi) {
                rhi = b;   /* the run goes on */
                continue;
            }
            if (rlo < hi && lo < rhi && ns < max)   /* the run ends: it held [lo,hi)? */
                seen[ns++] = (typeof(seen[0])){ rlo, rhi, 1 };
            rlo = anon ? a : 0;
            rhi = anon ? b : 0;
            if (a >= hi || ns == max)
                done = 1;   /* the file is sorted by address */
            else if (!anon && b > lo)
                seen[ns++] = (typeof(seen[0])){ a, b, 0 };
        }
    }
    if (!done && rlo < hi && lo < rhi && ns < max)
        seen[ns++] = (typeof(seen[0])){ rlo, rhi, 1 };
    syscall(SYS_close, fd);
    pthread_mutex_lock(&vma_lock);
    if (gen == g)   /* nothing was mapped or unmapped meanwhile */
        for (int k = 0; k < ns; k++)
            note_locked(seen[k].lo, seen[k].hi, seen[k].anon);
    pthread_mutex_unlock(&vma_lock);
    return 0;
}

int vma_private_anon(uintptr_t lo, uintptr_t hi)
{
    pthread_mutex_lock(&vma_lock);
    int k = lookup_locked(lo, hi);
    pthread_mutex_unlock(&vma_lock);
    if (k >= 0) {
        ctr_add(C_VMA_HITS, 1);
        return k;
    }
    if (learn(lo, hi) != 0)
        return 0;
    pthread_mutex_lock(&vma_lock);
    k = lookup_locked(lo, hi);
    pthread_mutex_unlock(&vma_lock);
    return k == 1;
}

void vma_reset(void)
{
    pthread_mutex_init(&vma_lock, NULL);
    nspans = 0;
    gen++;
}
