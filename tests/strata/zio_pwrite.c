/*
 * Regression helper: a pwrite of a zIO-tracked buffer to a Strata file.
 * Under `zio run -- strata run`, the memcpy below (out of a buffer filled by
 * read) is elided (dst becomes an
 * intermediate of src) and libzio turns the pwrite into pwritev of the
 * resolved originals.  libstrata must take that pwritev: when it went to
 * glibc, the bytes went to Strata's /dev/null placeholder fd and were lost.
 *   strata_zio_pwrite STATS_COPY   (writes /strata/p.bin; copies zio's stats page)
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../zio/stats_copy.h"

#define SIZE (1u << 20)

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s STATS_COPY\n", argv[0]);
        return 1;
    }
    unsigned char *src = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *dst = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (src == MAP_FAILED || dst == MAP_FAILED)
        return 2;
    for (unsigned i = 0; i < SIZE; i++)
        dst[i] = (unsigned char)(i * 11 + 5);
    /* zIO tracks copies out of input buffers: fill src with read() */
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "/dev/shm/strata_zio_pwrite.%d", (int)getpid());
    int t = open(tmp, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (t < 0 || write(t, dst, SIZE) != SIZE || pread(t, src, SIZE, 0) != SIZE)
        return 2;
    close(t);
    unlink(tmp);
    memset(dst, 0, SIZE);
    memcpy(dst, src, SIZE); /* elided: dst becomes an intermediate of src */
    int fd = open("/strata/p.bin", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0)
        return 3;
    ssize_t a = pwrite(fd, dst, SIZE, 0);
    ssize_t b = pwrite(fd, dst + 3 * 4096 + 100, 200000, SIZE);
    printf("%zd %zd\n", a, b);
    if (close(fd) != 0 || copy_stats(argv[1]) != 0)
        return 4;
    return 0;
}
