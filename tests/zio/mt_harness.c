/*
 * Multithreaded zIO check: several threads each read file data (pread: an
 * input call, so originals), copy it along a chain of buffers, touch the
 * copies (reads and writes), overwrite the original, realloc and free, and
 * verify every byte against the known file contents after each step.
 *
 * usage: zio_mt_harness FILE THREADS ITERATIONS SEED [STATS_COPY]
 * Exit 0 and "ok" when no mismatch was found; exit 1 with the first
 * mismatch otherwise.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stats_copy.h"

#define MIB (1 << 20)
#define FILE_SIZE (4 * MIB)

static int fd;
static int iterations;
static unsigned seed0;
static volatile int failed;

static uint8_t file_byte(size_t i)
{
    return (uint8_t)((i * 2654435761u) >> 13);
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* buffer b must hold file bytes [off, off+len) at boff, except where the
 * thread wrote its own marker bytes (tracked by the caller) */
static int check(const char *what, int t, const uint8_t *b, size_t boff, size_t off, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        if (b[boff + k] != file_byte(off + k)) {
            fprintf(stderr, "thread %d: %s mismatch at +%zu (got %u want %u)\n", t, what, k,
                    b[boff + k], file_byte(off + k));
            failed = 1;
            return 1;
        }
    }
    return 0;
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint32_t s = seed0 * 7919u + (uint32_t)t * 104729u + 1;
    uint8_t *orig = malloc(MIB), *c1 = malloc(MIB), *c2 = malloc(MIB);
    for (int it = 0; it < iterations && !failed; it++) {
        size_t len = 20000 + rnd(&s) % (MIB / 2);
        size_t off = rnd(&s) % (FILE_SIZE - len);
        size_t o0 = rnd(&s) % (MIB - len), o1 = rnd(&s) % (MIB - len), o2 = rnd(&s) % (MIB - len);
        if (pread(fd, orig + o0, len, (off_t)off) != (ssize_t)len) {
            perror("pread");
            failed = 1;
            break;
        }
        memcpy(c1 + o1, orig + o0, len);
        memcpy(c2 + o2, c1 + o1, len);
        /* sparse reads of the last copy: faults on a few pages */
        for (int k = 0; k < 3; k++) {
            size_t p = rnd(&s) % len;
            if (c2[o2 + p] != file_byte(off + p)) {
                fprintf(stderr, "thread %d: sparse read mismatch\n", t);
                failed = 1;
            }
        }
        /* overwrite part of the original: the copies must keep the old data */
        size_t w = rnd(&s) % len, wl = 1 + rnd(&s) % 9000;
        if (w + wl > len)
            wl = len - w;
        memset(orig + o0 + w, 0xA5, wl);
        if (check("c1", t, c1, o1, off, len) || check("c2", t, c2, o2, off, len))
            break;
        /* write into an intermediate, then the other copy must be intact */
        memset(c1 + o1 + len / 2, 0x5A, 100);
        if (check("c2 after c1 write", t, c2, o2, off, len))
            break;
        if (it % 5 == 4) {   /* move the last copy with realloc, drop one */
            c2 = realloc(c2, MIB + 4096 * (size_t)(it % 3));
            if (check("c2 after realloc", t, c2, o2, off, len))
                break;
            free(c1);
            c1 = malloc(MIB);
        }
    }
    free(orig);
    free(c1);
    free(c2);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s FILE THREADS ITERATIONS SEED\n", argv[0]);
        return 2;
    }
    int nthreads = atoi(argv[2]);
    iterations = atoi(argv[3]);
    seed0 = (unsigned)atoi(argv[4]);
    fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    uint8_t *chunk = malloc(MIB);
    for (size_t pos = 0; pos < FILE_SIZE; pos += MIB) {
        for (size_t k = 0; k < MIB; k++)
            chunk[k] = file_byte(pos + k);
        if (pwrite(fd, chunk, MIB, (off_t)pos) != MIB) {
            perror("pwrite");
            return 2;
        }
    }
    free(chunk);
    pthread_t th[64];
    for (int t = 0; t < nthreads && t < 64; t++)
        pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    for (int t = 0; t < nthreads && t < 64; t++)
        pthread_join(th[t], NULL);
    if (argc > 5)
        copy_stats(argv[5]);
    if (failed)
        return 1;
    printf("ok\n");
    return 0;
}
