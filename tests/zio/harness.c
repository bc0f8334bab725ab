/*
 * Scripted copy/IO harness for the zIO property test.
 *
 * Reads one operation per line from stdin and applies it to a table of heap
 * buffers.  Input comes from a socketpair fed by a child process with a
 * deterministic pseudo-random stream (and from a file of the same stream for
 * `read`); output (send/write/writev) goes to a socketpair drained by a
 * second child into OUT_FILE.  Every observation (`rd`) and a final digest of
 * all buffers is printed on stdout.  Run once plainly and once under libzio:
 * stdout and OUT_FILE must be identical.
 *
 * usage: zio_harness OUT_FILE INPUT_FILE [STATS_COPY]
 * ops:   alloc B SIZE | free B | realloc B SIZE | shalloc B SIZE (MAP_SHARED)
 *        fresh B SIZE (malloc, contents not set: read only what was written)
 *        anon B SIZE (mmap MAP_PRIVATE) | reshare B HOW (B's mapping becomes a
 *        shared one at the same address, zero filled; HOW 0: munmap, then a
 *        raw mmap system call no interposer sees; 1: mmap MAP_FIXED over it;
 *        2: mremap of a new shared mapping onto it)
 *        recv B OFF LEN | read B OFF LEN
 *        cpy SB SOFF DB DOFF LEN | mov SB SOFF DB DOFF LEN
 *        wr B OFF LEN SEED | rd B OFF LEN | discard B OFF LEN (MADV_DONTNEED)
 *        send B OFF LEN | write B OFF LEN | writev B OFF LEN | sleep MS
 *        samerun A B (with $ZIO_HARNESS_NOTES: append "samerun 1" there if
 *        buffers A and B lie in one run of contiguous private anonymous
 *        mappings, as libzio's mapping-kind cache learns them, else 0)
 * STATS_COPY: at the end, the process's zio stats page is copied there.
 */
#define _GNU_SOURCE   /* mremap */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats_copy.h"

#define NBUF 8

static unsigned char *buf[NBUF];
static size_t size[NBUF];
static int shared[NBUF];   /* mmap'd (MAP_SHARED or not) rather than malloc'd */

static void release(int b)
{
    if (shared[b])
        munmap(buf[b], size[b]);
    else
        free(buf[b]);
    buf[b] = NULL;
    size[b] = 0;
    shared[b] = 0;
}

static void die(const char *what);

/* Is a /proc/self/maps line a private anonymous mapping (zio_vma.c's rule)? */
static int private_anon(const char *l)
{
    char perms[8], name[64] = "";
    unsigned long ino;
    if (sscanf(l, "%*x-%*x %7s %*x %*s %lu %63s", perms, &ino, name) < 2)
        return 0;
    return perms[3] == 'p' && ino == 0 &&
           (name[0] == '\0' || !strcmp(name, "[heap]") || !strcmp(name, "[stack]") ||
            !strncmp(name, "[anon:", 6));
}

/* 1 if [lo, hi) lies in one run of contiguous private anonymous mappings.
 * Raw system calls: libzio sees none of it. */
static int same_run(uintptr_t lo, uintptr_t hi)
{
    static char text[1 << 18];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
    size_t n = 0;
    ssize_t r;
    while (fd >= 0 && n < sizeof(text) - 1 &&
           (r = syscall(SYS_read, fd, text + n, sizeof(text) - 1 - n)) > 0)
        n += (size_t)r;
    if (fd < 0)
        die("/proc/self/maps");
    syscall(SYS_close, fd);
    text[n] = '\0';
    uintptr_t run_lo = 0, run_hi = 0;   /* the run being walked */
    for (char *l = strtok(text, "\n"); l != NULL; l = strtok(NULL, "\n")) {
        unsigned long a, b;
        if (sscanf(l, "%lx-%lx", &a, &b) != 2 || !private_anon(l)) {
            run_lo = run_hi = 0;
            continue;
        }
        if (a != run_hi)
            run_lo = a;
        run_hi = b;
        if (run_lo <= lo && hi <= run_hi)
            return 1;
    }
    return 0;
}

/* Replace the mapping at [p, p+len) with a shared anonymous one at the same
 * address, one of three ways (see the ops above). */
static void reshare(unsigned char *p, size_t len, int how)
{
    const int prot = PROT_READ | PROT_WRITE, sh = MAP_SHARED | MAP_ANONYMOUS;
    void *q = MAP_FAILED;
    if (how == 0) {
        if (munmap(p, len) != 0)
            die("munmap");
        q = (void *)syscall(SYS_mmap, p, len, prot, sh | MAP_FIXED, -1, 0L);
    } else if (how == 1) {
        q = mmap(p, len, prot, sh | MAP_FIXED, -1, 0);
    } else {
        void *s = mmap(NULL, len, prot, sh, -1, 0);
        if (s == MAP_FAILED)
            die("mmap");
        q = mremap(s, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p);
    }
    if (q != p)
        die("reshare");
}

static uint8_t stream_byte(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    return (uint8_t)(x >> 32);
}

static void feeder(int fd)
{
    static unsigned char chunk[65536];
    for (uint64_t pos = 0;; pos += sizeof(chunk)) {
        for (size_t k = 0; k < sizeof(chunk); k++)
            chunk[k] = stream_byte(pos + k);
        for (size_t off = 0; off < sizeof(chunk);) {
            ssize_t w = write(fd, chunk + off, sizeof(chunk) - off);
            if (w <= 0)
                _exit(0);
            off += (size_t)w;
        }
    }
}

static void drain(int fd, const char *path)
{
    static unsigned char chunk[65536];
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r <= 0)
            break;
        if (write(out, chunk, (size_t)r) != r)
            _exit(2);
    }
    close(out);
    _exit(0);
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void die(const char *what)
{
    perror(what);
    exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s OUT_FILE INPUT_FILE [STATS_COPY]\n", argv[0]);
        return 2;
    }
    int in_sv[2], out_sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, in_sv) || socketpair(AF_UNIX, SOCK_STREAM, 0, out_sv))
        die("socketpair");
    pid_t fpid = fork();
    if (fpid == 0) {
        close(in_sv[0]);
        feeder(in_sv[1]);
    }
    pid_t dpid = fork();
    if (dpid == 0) {
        close(out_sv[0]);
        close(in_sv[0]);
        drain(out_sv[1], argv[1]);
    }
    close(in_sv[1]);
    close(out_sv[1]);
    int in = in_sv[0], out = out_sv[0];
    int file = open(argv[2], O_RDONLY);
    if (file < 0)
        die("input file");

    char op[16];
    long a[6];
    while (scanf("%15s", op) == 1) {
        int n = 0;
        while (n < 6 && scanf(" %ld", &a[n]) == 1)
            n++;
        unsigned char *p = n > 1 && a[0] >= 0 && a[0] < NBUF ? buf[a[0]] : NULL;
        if (!strcmp(op, "shalloc") || !strcmp(op, "anon")) {
            release((int)a[0]);
            buf[a[0]] = mmap(NULL, (size_t)a[1], PROT_READ | PROT_WRITE,
                             (op[0] == 's' ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
            if (buf[a[0]] == MAP_FAILED)
                die("mmap");
            size[a[0]] = (size_t)a[1];
            shared[a[0]] = 1;
        } else if (!strcmp(op, "reshare")) {
            reshare(p, size[a[0]], (int)a[1]);
            shared[a[0]] = 1;
        } else if (!strcmp(op, "fresh")) {
            release((int)a[0]);
            if (!(buf[a[0]] = malloc((size_t)a[1])))
                die("alloc");
            size[a[0]] = 0;   /* left out of the final digest */
        } else if (!strcmp(op, "alloc") || !strcmp(op, "realloc")) {
            unsigned char *q = op[0] == 'a' ? malloc((size_t)a[1]) : realloc(buf[a[0]], (size_t)a[1]);
            if (!q)
                die("alloc");
            if (op[0] == 'a') {
                release((int)a[0]);
                memset(q, 0, (size_t)a[1]);   /* defined contents in both runs */
            } else if ((size_t)a[1] > size[a[0]]) {
                memset(q + size[a[0]], 0, (size_t)a[1] - size[a[0]]);
            }
            buf[a[0]] = q;
            size[a[0]] = (size_t)a[1];
        } else if (!strcmp(op, "free")) {
            release((int)a[0]);
        } else if (!strcmp(op, "recv") || !strcmp(op, "read")) {
            for (long got = 0; got < a[2];) {
                ssize_t r = op[2] == 'c' ? recv(in, p + a[1] + got, (size_t)(a[2] - got), 0)
                                         : read(file, p + a[1] + got, (size_t)(a[2] - got));
                if (r < 0)
                    die(op);
                if (r == 0)
                    lseek(file, 0, SEEK_SET);   /* input file wraps around */
                got += r;
            }
        } else if (!strcmp(op, "cpy")) {
            memcpy(buf[a[2]] + a[3], p + a[1], (size_t)a[4]);
        } else if (!strcmp(op, "mov")) {
            memmove(buf[a[2]] + a[3], p + a[1], (size_t)a[4]);
        } else if (!strcmp(op, "wr")) {
            for (long k = 0; k < a[2]; k++)
                p[a[1] + k] = (unsigned char)(a[3] + k * 7);
        } else if (!strcmp(op, "rd")) {
            printf("rd %d %ld %ld %016llx\n", (int)a[0], a[1], a[2],
                   (unsigned long long)fnv(p + a[1], (size_t)a[2]));
        } else if (!strcmp(op, "send") || !strcmp(op, "write") || !strcmp(op, "writev")) {
            for (long put = 0; put < a[2];) {
                unsigned char *s = p + a[1] + put;
                size_t len = (size_t)(a[2] - put), half = len / 2;
                struct iovec v[2] = { { s, half }, { s + half, len - half } };
                ssize_t w = op[0] == 's' ? send(out, s, len, 0)
                          : op[5] == 'v' ? writev(out, v, 2) : write(out, s, len);
                if (w <= 0)
                    die(op);
                put += w;
            }
        } else if (!strcmp(op, "discard")) {
            uintptr_t lo = ((uintptr_t)p + (uintptr_t)a[1] + 4095) & ~(uintptr_t)4095;
            uintptr_t hi = ((uintptr_t)p + (uintptr_t)a[1] + (uintptr_t)a[2]) & ~(uintptr_t)4095;
            if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
                die("madvise");
            /* which whole pages were dropped depends on where the buffer
             * lies; zero the whole span so every run sees the same bytes */
            memset(p + a[1], 0, (size_t)a[2]);
        } else if (!strcmp(op, "samerun")) {
            const char *notes = getenv("ZIO_HARNESS_NOTES");
            uintptr_t x = (uintptr_t)buf[a[0]], y = (uintptr_t)buf[a[1]];
            uintptr_t lo = x < y ? x : y;
            uintptr_t hi = x < y ? y + size[a[1]] : x + size[a[0]];
            FILE *f = notes != NULL ? fopen(notes, "a") : NULL;
            if (f != NULL) {
                fprintf(f, "samerun %d\n", same_run(lo, hi));
                fclose(f);
            }
        } else if (!strcmp(op, "sleep")) {
            usleep((useconds_t)a[0] * 1000);   /* lets the periodic GC run */
        } else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
    }
    for (int b = 0; b < NBUF; b++)
        printf("final %d %zu %016llx\n", b, size[b],
               (unsigned long long)(buf[b] ? fnv(buf[b], size[b]) : 0));
    fflush(stdout);
    if (argc > 3 && copy_stats(argv[3]) != 0)
        die("stats copy");
    shutdown(out, SHUT_WR);
    close(out);
    int st;
    waitpid(dpid, &st, 0);
    kill(fpid, SIGKILL);
    waitpid(fpid, &st, 0);
    return 0;
}
