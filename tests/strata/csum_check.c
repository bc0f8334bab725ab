/*
 * Strata's payload checksum (checksum.c), every variant against every other
 * for lengths and alignments around the line and stretch sizes:
 *  - strata_copy_csum without a copy (the AVX2 lines where the CPU has them),
 *  - with a copy to an unaligned destination (the SSE2 lines), to an aligned
 *    one with plain and with streaming stores: same checksum, same bytes,
 *  - strata_csum_flush: same checksum, and every byte of the range passed
 *    to the flush exactly once (none outside it).
 * Prints "ok N" (N cases) or the first mismatch, exit 1.
 */
#include "strata_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLEN (3 * 65536 + 256)

static const char *fbase;
static size_t flen;
static unsigned char flushed[MAXLEN];
static int flush_bad;

static void count_flush(const void *addr, size_t len)
{
    const char *a = addr;
    if (a < fbase || a + len > fbase + flen) {
        flush_bad = 1;
        return;
    }
    for (size_t i = 0; i < len; i++)
        flushed[a - fbase + i]++;
}

static int check(const char *src, size_t len, uint64_t seed, char *dst_al, char *dst_un)
{
    uint32_t want = strata_copy_csum(NULL, src, len, seed, 0);
    for (int nt = 0; nt < 2; nt++) {
        memset(dst_al, 0x5a, len + 64);
        if (strata_copy_csum(dst_al, src, len, seed, nt) != want || memcmp(dst_al, src, len) != 0) {
            printf("copy (aligned, nt %d) differs: len %zu\n", nt, len);
            return 1;
        }
    }
    memset(dst_un, 0x5a, len + 64);
    if (strata_copy_csum(dst_un, src, len, seed, 0) != want || memcmp(dst_un, src, len) != 0) {
        printf("copy (unaligned) differs: len %zu\n", len);
        return 1;
    }
    fbase = src;
    flen = len;
    flush_bad = 0;
    memset(flushed, 0, len);
    if (strata_csum_flush(src, len, seed, count_flush) != want) {
        printf("csum_flush checksum differs: len %zu\n", len);
        return 1;
    }
    for (size_t i = 0; i < len; i++)
        if (flushed[i] != 1 || flush_bad) {
            printf("csum_flush flushed byte %zu of %zu %d times (outside: %d)\n", i, len, flushed[i],
                   flush_bad);
            return 1;
        }
    return 0;
}

int main(void)
{
    char *src = aligned_alloc(64, MAXLEN + 128), *dst = aligned_alloc(64, MAXLEN + 192);
    srand(7);
    for (size_t i = 0; i < MAXLEN + 128; i++)
        src[i] = (char)rand();
    size_t lens[] = {4095, 4096, 4097, 4160, 8191, 8192, 65535, 65536, 65537, 65600, 3 * 65536 + 17};
    long cases = 0;
    for (size_t off = 0; off < 64; off += 3) {
        for (size_t len = 0; len <= 300; len++, cases++)
            if (check(src + off, len, off * 31 + len, dst, dst + 1 + off % 31))
                return 1;
        for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++, cases++)
            if (check(src + off, lens[k], off, dst, dst + 1 + off % 31))
                return 1;
    }
    /* the sums see the bytes: one changed byte changes the checksum */
    uint32_t a = strata_copy_csum(NULL, src, 65536, 1, 0);
    src[40000] ^= 1;
    if (strata_copy_csum(NULL, src, 65536, 1, 0) == a) {
        printf("a changed byte left the checksum alone\n");
        return 1;
    }
    printf("ok %ld\n", cases);
    return 0;
}
