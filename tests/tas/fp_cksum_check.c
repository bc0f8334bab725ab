/*
 * The fast path's checksums against DPDK's rte_raw_cksum: every length up
 * to two jumbo segments' worth of header-sized steps, every alignment, on
 * random bytes and on all-0xff bytes (the carries' worst case), through
 * the dispatched sum (AVX2 where the CPU has it) and the scalar one.
 * Prints "ok <cases>" or the first mismatch, and exits non-zero on it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../../tas/fastpath/fp_cksum.h"

static int check(const uint8_t *buf, uint32_t len, unsigned off)
{
    uint16_t want = rte_raw_cksum(buf + off, len);
    uint16_t got = fp_raw_cksum(buf + off, len);
    uint16_t scalar = fp_raw_cksum_scalar(buf + off, len);
    uint16_t bulk = fp_raw_cksum_bulk(buf + off, len);
    if (got != want || scalar != want || bulk != want) {
        printf("mismatch: len %u offset %u: rte %#x, fp %#x, scalar %#x, bulk %#x\n",
               len, off, want, got, scalar, bulk);
        return 1;
    }
    return 0;
}

int main(void)
{
    static uint8_t rnd[20000], ones[20000];
    srand(7);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (uint8_t)rand();
        ones[i] = 0xff;
    }
    unsigned cases = 0;
    for (uint32_t len = 0; len <= 18000; len += len < 2100 ? 1 : 97)
        for (unsigned off = 0; off < 8; off++) {
            if (check(rnd, len, off) || check(ones, len, off))
                return 1;
            cases += 2;
        }
    printf("ok %u\n", cases);
    return 0;
}
