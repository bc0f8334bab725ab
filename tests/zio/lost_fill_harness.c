/*
 * An intermediate whose memory changes behind libzio, then a fill of it.
 *
 * Reads 256 KiB of INPUT_FILE into a malloc'd buffer (an original), copies
 * it into a private anonymous mapping (elided: an intermediate), then with
 * raw system calls that libzio does not interpose
 *   unmap: unmaps the destination -- nothing can read it any more, so the
 *          fill may skip it (counted in uffd_errors);
 *   remap: maps fresh memory over it -- mapped but no longer registered,
 *          so the fill cannot be done and libzio must abort, naming the
 *          page, rather than leave the program reading zeros.
 * Then it reads the file into the buffer again: the input releases the
 * original, which fills its dependent.  Prints "survived" if it gets past.
 *
 * usage: zio_lost_fill_harness INPUT_FILE unmap|remap STATS_COPY
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "stats_copy.h"

#define LEN (256 * 1024)

static void read_full(int fd, unsigned char *p)
{
    if (lseek(fd, 0, SEEK_SET) != 0)
        exit(3);
    for (size_t got = 0; got < LEN;) {
        ssize_t r = read(fd, p + got, LEN - got);
        if (r <= 0)
            exit(3);
        got += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    unsigned char *buf = malloc(LEN);
    unsigned char *dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fd < 0 || !buf || dst == MAP_FAILED)
        return 3;
    read_full(fd, buf);
    memcpy(dst, buf, LEN);
    printf("intermediate %p\n", (void *)dst);
    fflush(stdout);
    long r = strcmp(argv[2], "unmap") == 0
        ? syscall(SYS_munmap, dst, LEN)
        : syscall(SYS_mmap, dst, LEN, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r == -1)
        return 3;
    read_full(fd, buf);
    printf("survived\n");
    fflush(stdout);
    return copy_stats(argv[3]) != 0 ? 3 : 0;
}
