/*
 * Measurement kernel for bench/strata_fsync.py (one JSON object per run).
 *   strata_bench fsync strata POOL SIZE N [GAP_US]   append SIZE bytes + fsync, N times, on
 *                                             Strata (GAP_US: busy work between appends)
 *   strata_bench fsync kernel PATH SIZE N     the same on a kernel file system
 *   strata_bench bw strata POOL N             4 KiB log-append bandwidth (digest excluded
 *                                             and included, reported separately)
 *   strata_bench bw raw PATH N                4 KiB pmem_memcpy_persist bandwidth
 *   strata_bench digest POOL SIZE N           append N writes of SIZE bytes to one file (an AOF's
 *                                             shape), then time digesting them into file blocks;
 *                                             in the same run, time one pmem_memcpy_persist of the
 *                                             same bytes (the least a digest must do)
 *   strata_bench free POOL PATH MIB           unlink a file of MIB MiB on Strata (digest included)
 *                                             against unlink of the same file on the kernel FS at PATH
 * Latencies are per operation (write + fsync), from CLOCK_MONOTONIC.
 */
#include "strata/strata_api.h"

#include <fcntl.h>
#include <libpmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* gap_us: the program's own work between two appends (a busy wait, not
 * counted in the latency), as a server's request handling is */
static int fsync_bench(int strata, const char *where, size_t size, int n, double gap_us)
{
    char *buf = malloc(size);
    double *lat = malloc(n * sizeof(*lat));
    memset(buf, 'a', size);
    int fd;
    if (strata) {
        if (strata_attach(where) != 0)
            return 1;
        strata_unlink("/bench.dat");
        fd = strata_open("/bench.dat", O_CREAT | O_WRONLY | O_APPEND, 0644);
    } else {
        unlink(where);
        fd = open(where, O_CREAT | O_WRONLY | O_APPEND, 0644);
    }
    if (fd < 0) {
        perror("open");
        return 1;
    }
    double t0 = now();
    for (int i = 0; i < n; i++) {
        double s = now();
        ssize_t w = strata ? strata_write(fd, buf, size) : write(fd, buf, size);
        int f = strata ? strata_fsync(fd) : fsync(fd);
        lat[i] = now() - s;
        for (double until = now() + gap_us * 1e-6; gap_us > 0 && now() < until;)
            ;
        if (w != (ssize_t)size || f != 0) {
            perror("write/fsync");
            return 1;
        }
    }
    double total = now() - t0;
    strata ? strata_close(fd) : close(fd);
    if (!strata)
        unlink(where);
    qsort(lat, n, sizeof(*lat), cmp);
    printf("{\"p50_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, \"max_us\": %.3f, "
           "\"ops_per_s\": %.0f, \"n\": %d}\n",
           lat[n / 2] * 1e6, lat[(int)(n * 0.99)] * 1e6, lat[(int)(n * 0.999)] * 1e6, lat[n - 1] * 1e6,
           n / total, n);
    return 0;
}

static int bw_strata(const char *pool, int n)
{
    if (strata_attach(pool) != 0)
        return 1;
    static char buf[4096];
    memset(buf, 'b', sizeof(buf));
    strata_unlink("/bw.dat");
    int fd = strata_open("/bw.dat", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    /* append-only phases stay below the digest threshold; digest between them */
    int per_phase = 1000, phases = n / per_phase;
    double append = 0;
    for (int p = -1; p < phases; p++) { /* phase -1 warms up (faults the log in) */
        strata_ftruncate(fd, 0);
        strata_digest();
        double s = now();
        for (int i = 0; i < per_phase; i++)
            strata_pwrite(fd, buf, sizeof(buf), (int64_t)i * 4096);
        if (p >= 0)
            append += now() - s;
    }
    /* sustained: digests (threshold-triggered) included */
    double s = now();
    for (int i = 0; i < n; i++)
        strata_pwrite(fd, buf, sizeof(buf), (int64_t)(i % 4096) * 4096);
    double sustained = now() - s;
    strata_close(fd);
    printf("{\"append_gbps\": %.3f, \"sustained_gbps\": %.3f, \"n\": %d}\n",
           phases * per_phase * 4096.0 / append / 1e9, n * 4096.0 / sustained / 1e9, n);
    return 0;
}

/* Digest cost per byte against a plain persistent copy of the same bytes
 * from a region as large as the log's (digest reads them from the log, not
 * from a buffer the cache holds). */
static int digest_bench(const char *pool, size_t size, int n)
{
    if (strata_attach(pool) != 0)
        return 1;
    size_t total = size * (size_t)n;
    char *buf = malloc(size), *src = malloc(total), *dst = malloc(total);
    memset(buf, 'd', size);
    memset(src, 's', total);
    memset(dst, 0, total);
    strata_unlink("/digest.dat");
    int fd = strata_open("/digest.dat", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    double digest = 0, copy = 0;
    int rounds = 4;
    for (int r = -1; r < rounds; r++) { /* round -1 warms up; every round appends */
        for (int i = 0; i < n; i++)
            strata_pwrite(fd, buf, size, (int64_t)((size_t)(r + 1) * total + (size_t)i * size));
        double s = now();
        strata_digest();
        double t = now() - s;
        s = now();
        for (int i = 0; i < n; i++)
            pmem_memcpy_nodrain(dst + (size_t)i * size, src + (size_t)i * size, size);
        pmem_drain();
        double c = now() - s;
        if (r >= 0) {
            digest += t;
            copy += c;
        }
    }
    strata_close(fd);
    strata_unlink("/digest.dat");    /* (room for the next measurement) */
    double per = (double)rounds * n;
    printf("{\"size\": %zu, \"n\": %d, \"digest_us_per_write\": %.2f, \"copy_us_per_write\": %.2f, "
           "\"digest_over_copy\": %.2f}\n", size, n, digest / per * 1e6, copy / per * 1e6, digest / copy);
    free(buf);
    free(src);
    free(dst);
    return 0;
}

/* Freeing a large file's blocks (an AOF rewrite unlinks the old file)
 * against the kernel file system's unlink of the same bytes. */
static int free_bench(const char *pool, const char *path, int mib)
{
    if (strata_attach(pool) != 0)
        return 1;
    static char buf[1 << 20];
    memset(buf, 'f', sizeof(buf));
    int fd = strata_open("/free.dat", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int kfd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || kfd < 0) {
        perror("open");
        return 1;
    }
    for (int i = 0; i < mib; i++)
        if (strata_pwrite(fd, buf, sizeof(buf), (int64_t)i << 20) != (ssize_t)sizeof(buf) ||
            pwrite(kfd, buf, sizeof(buf), (off_t)i << 20) != (ssize_t)sizeof(buf)) {
            perror("write (is the pool big enough?)");
            return 1;
        }
    strata_close(fd);
    close(kfd);
    strata_digest();                 /* (the file's blocks are all in the shared area) */
    double s = now();
    strata_unlink("/free.dat");
    strata_digest();
    double t = now() - s;
    s = now();
    unlink(path);
    double k = now() - s;
    printf("{\"mib\": %d, \"strata_ms\": %.2f, \"kernel_ms\": %.2f, \"strata_over_kernel\": %.2f}\n",
           mib, t * 1e3, k * 1e3, t / k);
    return 0;
}

static int bw_raw(const char *path, int n)
{
    size_t len, region = 64u << 20;
    int is_pmem;
    unlink(path);
    char *m = pmem_map_file(path, region, PMEM_FILE_CREATE, 0600, &len, &is_pmem);
    if (m == NULL) {
        perror("pmem_map_file");
        return 1;
    }
    static char buf[4096];
    memset(buf, 'c', sizeof(buf));
    memset(m, 0, len); /* fault the pages in, as the pool's log is */
    double s = now();
    for (int i = 0; i < n; i++)
        pmem_memcpy_persist(m + ((size_t)i * 4096) % (len - 4096), buf, sizeof(buf));
    double t = now() - s;
    pmem_unmap(m, len);
    unlink(path);
    printf("{\"raw_gbps\": %.3f, \"n\": %d, \"is_pmem\": %d}\n", n * 4096.0 / t / 1e9, n, is_pmem);
    return 0;
}

int main(int argc, char **argv)
{
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "fsync") == 0)
        return fsync_bench(strcmp(argv[2], "strata") == 0, argv[3], (size_t)atol(argv[4]), atoi(argv[5]),
                           argc == 7 ? atof(argv[6]) : 0);
    if (argc == 5 && strcmp(argv[1], "bw") == 0)
        return strcmp(argv[2], "raw") == 0 ? bw_raw(argv[3], atoi(argv[4])) : bw_strata(argv[3], atoi(argv[4]));
    if (argc == 5 && strcmp(argv[1], "free") == 0)
        return free_bench(argv[2], argv[3], atoi(argv[4]));
    if (argc == 5 && strcmp(argv[1], "digest") == 0)
        return digest_bench(argv[2], (size_t)atol(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: see the comment at the top of bench/strata_bench.c\n");
    return 2;
}
