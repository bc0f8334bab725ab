/*
 * Crash-test helper (C API user).
 *   strata_crashwriter write POOL SEED [refs|big]   runs single-syscall file ops
 *       forever; before each op it prints "I <op>" and after it returns (and,
 *       for data, after fsync) it prints "D", so the test knows what is
 *       durable.  With "refs", appends are one writev of [inline head | a
 *       piece of a registered map of the pool's ref area | inline tail], as
 *       ORP writes received data; the map is reused like a receive ring,
 *       asking strata_ref_busy (and digesting) before overwriting bytes.
 *       With "big", appends of 195-440 KiB (more blocks than one batch of
 *       digest or of freeing, shared.c) to files of at most 2 MiB: a crash
 *       lands inside those batches.
 *   strata_crashwriter mkfs POOL         small test pool (64 MiB, 1 MiB logs)
 *   strata_crashwriter tear POOL MODE    simulated power loss (tear_tail.c);
 *       prints "torn <slots>".
 *   strata_crashwriter verify POOL       mounts (recovers), prints
 *       "F <name> <hex content>" per file under /cw and "fsck <problems>".
 * Ops: C name (create), A name len (append), T name size (truncate),
 *      R from to (rename), U name (unlink).
 */
#include "strata/strata_api.h"
#include "tear_tail.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define NAMES 6
#define RING (2u << 20)

/* The "receive ring": RING bytes of the pool's ref area after its table page,
 * mapped separately and registered, as libtas does with its NVM buffers. */
static unsigned char *ring;
static size_t ring_at;

static int ring_map(const char *pool)
{
    void *area;
    uint64_t off, len;
    int pfd = open(pool, O_RDWR);
    if (pfd < 0 || strata_ref_area(&area, &off, &len) != 0 || len < RING + 4096)
        return -1;
    ring = mmap(NULL, RING, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, (off_t)(off + 4096));
    if (ring == MAP_FAILED)
        return -1;
    return strata_nvm_map(pfd, off + 4096, ring, RING);
}

/* Append buf[0, len) as [head | ring piece | tail] in one writev. */
static ssize_t ring_append(int fd, const char *buf, size_t len, unsigned *seed)
{
    size_t h = (size_t)rand_r(seed) % 300, t = (size_t)rand_r(seed) % 300;
    h = h > len ? len : h;
    t = t > len - h ? len - h : t;
    size_t m = len - h - t;
    if (ring_at + m > RING)
        ring_at = 0;
    if (strata_ref_busy(ring + ring_at, m) && strata_digest_self() < 0)
        return -1;
    memcpy(ring + ring_at, buf + h, m);
    struct iovec v[3] = {{(void *)buf, h}, {ring + ring_at, m}, {(void *)(buf + h + m), t}};
    ring_at = (ring_at + m + 63) & ~(size_t)63;
    return strata_writev(fd, v, 3);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(1, line, (size_t)n) != n)
        exit(3);
}

#define BIG_FILE (2l << 20)

static int run(const char *pool, unsigned seed, int refs, int big)
{
    if (strata_attach(pool) != 0 || (refs && ring_map(pool) != 0))
        return 2;
    strata_mkdir("/cw", 0755);
    int fds[NAMES];
    long sizes[NAMES];
    for (int i = 0; i < NAMES; i++)
        fds[i] = -1, sizes[i] = 0;
    static char buf[1 << 19];
    for (long k = 0;; k++) {
        int i = rand_r(&seed) % NAMES, op = rand_r(&seed) % 10;
        char name[32], to[32];
        snprintf(name, sizeof(name), "/cw/f%d", i);
        if (fds[i] < 0) {
            say("I C %s\n", name);
            fds[i] = strata_open(name, O_CREAT | O_WRONLY | O_APPEND, 0644);
            sizes[i] = 0;
        } else if (op < 6 && !(big && sizes[i] > BIG_FILE - 450000)) {
            long len = refs  ? 16384 + rand_r(&seed) % 40000
                       : big ? 200000 + rand_r(&seed) % 250000
                             : 1 + rand_r(&seed) % 5000;
            for (long j = 0; j < len; j++)
                buf[j] = (char)((k * 31 + j) & 0xff);
            say("I A %s %ld %ld\n", name, len, k);
            ssize_t n = refs ? ring_append(fds[i], buf, (size_t)len, &seed) : strata_write(fds[i], buf, (size_t)len);
            if (n != len || strata_fsync(fds[i]) != 0)
                return 4;
            sizes[i] += len;
        } else if (op < 7) {       /* (also an append to a big file that is full) */
            long size = sizes[i] / 2;
            say("I T %s %ld\n", name, size);
            if (strata_ftruncate(fds[i], size) != 0)
                return 5;
            sizes[i] = size;
        } else if (op < 9) {
            int j = (i + 1 + rand_r(&seed) % (NAMES - 1)) % NAMES;
            snprintf(to, sizeof(to), "/cw/f%d", j);
            say("I R %s %s\n", name, to);
            if (strata_rename(name, to) != 0)
                return 6;
            if (fds[j] >= 0)
                strata_close(fds[j]);
            fds[j] = fds[i], sizes[j] = sizes[i], fds[i] = -1;
        } else {
            strata_close(fds[i]);
            fds[i] = -1;
            say("I U %s\n", name);
            if (strata_unlink(name) != 0)
                return 7;
        }
        say("D\n");
    }
}

static int verify(const char *pool)
{
    static char report[65536];
    int problems = strata_fsck(pool, report, sizeof(report));
    struct strata_dirent_out *ents;
    int n = strata_listdir("/cw", &ents);
    for (int i = 0; i < n; i++) {
        char path[300];
        snprintf(path, sizeof(path), "/cw/%s", ents[i].name);
        int fd = strata_open(path, O_RDONLY, 0);
        static unsigned char data[1 << 22];
        ssize_t len = fd < 0 ? -1 : strata_read(fd, data, sizeof(data));
        printf("F %s ", ents[i].name);
        for (ssize_t j = 0; j < len; j++)
            printf("%02x", data[j]);
        printf("\n");
        strata_close(fd);
    }
    printf("fsck %d\n%s", problems, report);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "write") == 0)
        return run(argv[2], (unsigned)atoi(argv[3]), argc >= 5 && strcmp(argv[4], "refs") == 0,
                   argc >= 5 && strcmp(argv[4], "big") == 0);
    if (argc >= 3 && strcmp(argv[1], "mkfs") == 0)
        return strata_mkfs(argv[2], 64u << 20, 8, 1u << 20, 1024) == 0 ? 0 : 1;
    if (argc >= 4 && strcmp(argv[1], "tear") == 0) {
        int torn = tear_tail(argv[2], atoi(argv[3]));
        if (torn < 0) {
            perror("tear");
            return 1;
        }
        printf("torn %d\n", torn);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "verify") == 0)
        return verify(argv[2]);
    fprintf(stderr, "usage: %s mkfs|write|tear|verify POOL [SEED [refs|big]|MODE]\n", argv[0]);
    return 1;
}
