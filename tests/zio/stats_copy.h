/* Test harness helper: copy this process's zio stats page (which libzio
 * removes at exit) to `dst`, so the test can check that elision happened. */
#ifndef ZIO_TEST_STATS_COPY_H
#define ZIO_TEST_STATS_COPY_H

#include "kb/stats.h"

#include <stdio.h>
#include <unistd.h>

static inline int copy_stats(const char *dst)
{
    static char page[KB_STATS_PAGE_SIZE];
    char src[64];
    snprintf(src, sizeof(src), "/dev/shm/kbstats.zio.%d", (int)getpid());
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!out) {
        if (in)
            fclose(in);
        return -1;
    }
    size_t n = in ? fread(page, 1, sizeof(page), in) : 0;
    fwrite(page, 1, n, out);
    fclose(out);
    if (in)
        fclose(in);
    return 0;
}

#endif
