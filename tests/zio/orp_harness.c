/*
 * Scripted harness for zIO's side of ORP (design T1): a stack registers its
 * receive ring pages as ZIO_ORIG_NVM originals (shared memory, not
 * write-protected), the application copies out of the ring and shifts the
 * data inside its buffer with overlapping memmoves (Redis's sdsrange), and
 * the stack recycles ring pages with zio_release_if_unshared() / a forced
 * zio_release(), registering them again for the next lap.
 *
 * Run once plainly and once under libzio: stdout (every `rd` and a final
 * digest of all buffers) must be identical.  What only libzio can answer
 * (try-release results, resolved pieces, counter deltas per move) goes to
 * LOG_FILE, one line per op that asks.
 *
 * usage: zio_orp_harness LOG_FILE < script
 * ops:   ring R PAGES              shared ring R, filled from seed R
 *        reg R OFF LEN             zio_register_original(..., ZIO_ORIG_NVM)
 *        lap R OFF LEN SEED        stack reuses ring bytes: try-release, forced
 *                                  release when busy, overwrite, register again
 *        try R OFF LEN             log zio_release_if_unshared()
 *        rel R OFF LEN             zio_release()
 *        alloc B SIZE | free B     application buffers (malloc)
 *        grow B SIZE               realloc a buffer (its bytes stay; address may change)
 *        cpy R ROFF B BOFF LEN     memcpy ring -> buffer
 *        scpy R ROFF B BOFF LEN PRIOR  a stack's stream piece ring -> buffer:
 *                                  zio_copy_continued() (memcpy when plain)
 *        mov B SOFF DOFF LEN       memmove inside a buffer (may overlap)
 *        ovr B OFF LEN SEED        memcpy new bytes over a buffer range
 *        bcp SB SOFF DB DOFF LEN   memcpy buffer -> buffer (Redis's AOF copies)
 *        poke B OFF SEED           store one byte directly (libzio sees no call)
 *        rd B OFF LEN              print a hash of the range
 *        res B OFF LEN             log zio_resolve(): "R:off" per ring piece,
 *                                  "P" for the buffer itself, "?" otherwise
 *        tryres B OFF LEN          try-release the ring pages of every ring
 *                                  piece zio_resolve() gives: "tryres RC..."
 *        ctr NAME                  log a counter
 *        open PATH                 the file for the next ops (O_TRUNC)
 *        pwr B OFF LEN FOFF        pwrite from a buffer
 *        pwrring R OFF LEN FOFF    pwrite straight from a ring (an original)
 *        wrf B OFF LEN             write from a buffer
 *        prd B OFF LEN FOFF        pread into a buffer
 *        frd FOFF LEN              print a hash of the file's bytes
 */
#define ZIO_API_LOOKUP
#include "zio/zio_api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kb/stats.h"

#define NRING 4
#define NBUF 8

static unsigned char *ring[NRING], *buf[NBUF];
static size_t ring_len[NRING], buf_len[NBUF];
static struct zio_api api;
static int have;
static FILE *out_log;
static struct kb_stats_page *page;

static void die(const char *what)
{
    perror(what);
    exit(3);
}

static uint8_t pattern(uint64_t seed, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (seed + 1) * 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebULL;
    return (uint8_t)(x >> 40);
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* this process's zio counter NAME, or 0 without libzio */
static uint64_t counter(const char *name)
{
    if (!page) {
        char path[64];
        snprintf(path, sizeof(path), "/dev/shm/kbstats.zio.%d", (int)getpid());
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            return 0;
        void *m = mmap(NULL, KB_STATS_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED)
            return 0;
        page = m;
    }
    uint32_t n = __atomic_load_n(&page->ncounters, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n && i < KB_STATS_MAX; i++)
        if (strncmp(page->c[i].name, name, KB_STATS_NAME_LEN) == 0)
            return __atomic_load_n(&page->c[i].value, __ATOMIC_RELAXED);
    return 0;
}

static uint64_t faults(void)
{
    return counter("faults_intermediate") + counter("faults_original_write");
}

static int try_release(int r, size_t off, size_t len)
{
    return have ? api.release_if_unshared(ring[r] + off, len) : 0;
}

static void resolve(int b, size_t off, size_t len)
{
    struct iovec iov[64];
    int n = have ? api.resolve(buf[b] + off, len, iov, 64) : -1;
    fprintf(out_log, "res %d", n);
    for (int k = 0; k < n; k++) {
        unsigned char *p = iov[k].iov_base;
        int which = -1;
        for (int r = 0; r < NRING; r++)
            if (ring[r] && p >= ring[r] && p < ring[r] + ring_len[r])
                which = r;
        if (which >= 0)
            fprintf(out_log, " %d:%zu+%zu", which, (size_t)(p - ring[which]), iov[k].iov_len);
        else if (p >= buf[b] && p < buf[b] + buf_len[b])
            fprintf(out_log, " P+%zu", iov[k].iov_len);
        else
            fprintf(out_log, " ?+%zu", iov[k].iov_len);
    }
    fprintf(out_log, "\n");
}

/* Every ring page an intermediate of the range depends on must answer busy,
 * and nothing may be filled. */
static void try_resolved(int b, size_t off, size_t len)
{
    struct iovec iov[64];
    int n = have ? api.resolve(buf[b] + off, len, iov, 64) : 0;
    uint64_t before = counter("release_fill_bytes");
    fprintf(out_log, "tryres");
    for (int k = 0; k < n; k++) {
        unsigned char *p = iov[k].iov_base;
        for (int r = 0; r < NRING; r++) {
            if (!ring[r] || p < ring[r] || p >= ring[r] + ring_len[r])
                continue;
            uintptr_t lo = (uintptr_t)p & ~4095UL, hi = ((uintptr_t)p + iov[k].iov_len + 4095) & ~4095UL;
            fprintf(out_log, " %d", api.release_if_unshared((void *)lo, hi - lo));
        }
    }
    fprintf(out_log, " fill %llu\n", (unsigned long long)(counter("release_fill_bytes") - before));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s LOG_FILE < script\n", argv[0]);
        return 2;
    }
    out_log = fopen(argv[1], "w");
    if (!out_log)
        die("log");
    have = zio_api_lookup(&api);
    fprintf(out_log, "%s\n", have ? "zio" : "plain");
    unsigned char *scratch = NULL;
    int file = -1;
    char op[16];
    long a[6];
    while (scanf("%15s", op) == 1) {
        char name[KB_STATS_NAME_LEN + 1];
        if (!strcmp(op, "ctr")) {
            if (scanf("%32s", name) != 1)
                die("ctr name");
            fprintf(out_log, "ctr %s %llu\n", name, (unsigned long long)counter(name));
            continue;
        }
        if (!strcmp(op, "open")) {
            char path[256];
            if (scanf("%255s", path) != 1)
                die("open path");
            file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
            if (file < 0)
                die(path);
            continue;
        }
        int n = 0;
        while (n < 6 && scanf(" %ld", &a[n]) == 1)
            n++;
        int i0 = (int)a[0];
        if (!strcmp(op, "ring")) {
            ring_len[i0] = (size_t)a[1] * 4096;
            ring[i0] = mmap(NULL, ring_len[i0], PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (ring[i0] == MAP_FAILED)
                die("mmap");
            for (size_t i = 0; i < ring_len[i0]; i++)
                ring[i0][i] = pattern((uint64_t)i0, i);
        } else if (!strcmp(op, "reg")) {
            if (have && api.register_original(ring[i0] + a[1], (size_t)a[2], ZIO_ORIG_NVM) != 0)
                die("register");
        } else if (!strcmp(op, "lap")) {
            int rc = try_release(i0, (size_t)a[1], (size_t)a[2]);
            uint64_t before = counter("release_fill_bytes");
            if (rc == 1)
                api.release(ring[i0] + a[1], (size_t)a[2]);
            fprintf(out_log, "lap %d %llu\n", rc,
                    (unsigned long long)(counter("release_fill_bytes") - before));
            for (long i = 0; i < a[2]; i++)   /* the stack's own writes (not memcpy) */
                ((volatile unsigned char *)ring[i0])[a[1] + i] = pattern((uint64_t)a[3], (uint64_t)i);
            if (have && api.register_original(ring[i0] + a[1], (size_t)a[2], ZIO_ORIG_NVM) != 0)
                die("register again");
        } else if (!strcmp(op, "try")) {
            uint64_t before = counter("release_fill_bytes");
            int rc = try_release(i0, (size_t)a[1], (size_t)a[2]);
            fprintf(out_log, "try %d %llu\n", rc,
                    (unsigned long long)(counter("release_fill_bytes") - before));
        } else if (!strcmp(op, "rel")) {
            if (have)
                api.release(ring[i0] + a[1], (size_t)a[2]);
        } else if (!strcmp(op, "alloc")) {
            free(buf[i0]);
            buf_len[i0] = (size_t)a[1];
            buf[i0] = malloc(buf_len[i0]);
            if (!buf[i0])
                die("malloc");
        } else if (!strcmp(op, "grow")) {
            unsigned char *p = realloc(buf[i0], (size_t)a[1]);
            if (!p)
                die("realloc");
            buf[i0] = p;
            buf_len[i0] = (size_t)a[1];
        } else if (!strcmp(op, "free")) {
            free(buf[i0]);
            buf[i0] = NULL;
            buf_len[i0] = 0;
        } else if (!strcmp(op, "cpy")) {
            memcpy(buf[a[2]] + a[3], ring[i0] + a[1], (size_t)a[4]);
        } else if (!strcmp(op, "scpy")) {
            if (have)
                api.copy_continued(buf[a[2]] + a[3], ring[i0] + a[1], (size_t)a[4], (size_t)a[5]);
            else
                memcpy(buf[a[2]] + a[3], ring[i0] + a[1], (size_t)a[4]);
        } else if (!strcmp(op, "mov")) {
            uint64_t f0 = faults(), r0 = counter("moves_repointed");
            memmove(buf[i0] + a[2], buf[i0] + a[1], (size_t)a[3]);
            fprintf(out_log, "mov %llu %llu\n", (unsigned long long)(counter("moves_repointed") - r0),
                    (unsigned long long)(faults() - f0));
        } else if (!strcmp(op, "ovr")) {
            scratch = realloc(scratch, (size_t)a[2]);
            if (!scratch)
                die("scratch");
            for (long i = 0; i < a[2]; i++)
                scratch[i] = pattern((uint64_t)a[3] + 100, (uint64_t)i);
            memcpy(buf[i0] + a[1], scratch, (size_t)a[2]);
        } else if (!strcmp(op, "bcp")) {
            memcpy(buf[a[2]] + a[3], buf[i0] + a[1], (size_t)a[4]);
        } else if (!strcmp(op, "poke")) {
            ((volatile unsigned char *)buf[i0])[a[1]] ^= (unsigned char)(a[2] | 1);
        } else if (!strcmp(op, "frd")) {
            scratch = realloc(scratch, (size_t)a[1] + 1);
            if (!scratch || pread(file, scratch, (size_t)a[1], a[0]) != a[1])
                die("frd");
            printf("frd %ld %ld %016llx\n", a[0], a[1], (unsigned long long)fnv(scratch, (size_t)a[1]));
        } else if (!strcmp(op, "rd")) {
            printf("rd %d %ld %ld %016llx\n", i0, a[1], a[2],
                   (unsigned long long)fnv(buf[i0] + a[1], (size_t)a[2]));
        } else if (!strcmp(op, "tryres")) {
            try_resolved(i0, (size_t)a[1], (size_t)a[2]);
        } else if (!strcmp(op, "pwr")) {
            if (pwrite(file, buf[i0] + a[1], (size_t)a[2], a[3]) != a[2])
                die("pwrite");
        } else if (!strcmp(op, "pwrring")) {
            if (pwrite(file, ring[i0] + a[1], (size_t)a[2], a[3]) != a[2])
                die("pwrite");
        } else if (!strcmp(op, "wrf")) {
            if (write(file, buf[i0] + a[1], (size_t)a[2]) != a[2])
                die("write");
        } else if (!strcmp(op, "prd")) {
            if (pread(file, buf[i0] + a[1], (size_t)a[2], a[3]) != a[2])
                die("pread");
        } else if (!strcmp(op, "res")) {
            resolve(i0, (size_t)a[1], (size_t)a[2]);
        } else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
    }
    /* the API's argument checks */
    if (have) {
        errno = 0;
        int bad = api.release_if_unshared(NULL, 4096);
        fprintf(out_log, "badargs %d %d\n", bad, errno == EINVAL);
        errno = 0;
        bad = api.release_if_unshared((void *)(uintptr_t)-4096, 8192);
        fprintf(out_log, "badargs %d %d\n", bad, errno == EINVAL);
    }
    for (int b = 0; b < NBUF; b++)
        if (buf[b])
            printf("buf %d %016llx\n", b, (unsigned long long)fnv(buf[b], buf_len[b]));
    for (int r = 0; r < NRING; r++)
        if (ring[r])
            printf("ring %d %016llx\n", r, (unsigned long long)fnv(ring[r], ring_len[r]));
    fclose(out_log);
    free(scratch);
    if (file >= 0)
        close(file);
    return 0;
}
