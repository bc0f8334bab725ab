/*
 * Entry/extent checksum: a 4-lane multiply-rotate hash over 64-bit words.
 * Not a CRC: it only has to detect torn or stale bytes, and it must run at
 * memory bandwidth so that a checksummed log append stays close to a raw
 * persist (a byte-wise CRC would halve 4 KiB append bandwidth).
 */
#include "strata_internal.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t mix(uint64_t h, uint64_t w) { return rotl(h ^ (w * P2), 31) * P1; }

uint32_t strata_csum(uint64_t seed, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h[4] = {seed ^ P1, seed ^ P2, seed + P1, seed - P2};
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        h[0] = mix(h[0], w[0]);
        h[1] = mix(h[1], w[1]);
        h[2] = mix(h[2], w[2]);
        h[3] = mix(h[3], w[3]);
    }
    uint64_t acc = rotl(h[0], 1) + rotl(h[1], 7) + rotl(h[2], 12) + rotl(h[3], 18) + len;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc = mix(acc, w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        acc = mix(acc, w);
    }
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    return (uint32_t)(acc ^ (acc >> 32));
}
