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

/*
 * Payload checksum, fused with the copy into the log.  Two running sums per
 * 16-byte lane of each cache line (s1 += word; s2 += s1, a Fletcher-style
 * position-sensitive sum on 64-bit lanes) cost only adds, so copying and
 * checksumming a payload runs at copy speed; the 128 bytes of sums are then
 * folded by strata_csum.  SSE2 only (x86-64 baseline).
 */
#include <emmintrin.h>

struct sums {
    __m128i s1[4], s2[4];
};

static inline void add_line(struct sums *s, const __m128i v[4])
{
    for (int k = 0; k < 4; k++) {
        s->s1[k] = _mm_add_epi64(s->s1[k], v[k]);
        s->s2[k] = _mm_add_epi64(s->s2[k], s->s1[k]);
    }
}

static uint32_t fold(const struct sums *s, uint64_t seed, size_t len)
{
    uint64_t words[16];
    for (int k = 0; k < 4; k++) {
        _mm_storeu_si128((__m128i *)&words[2 * k], s->s1[k]);
        _mm_storeu_si128((__m128i *)&words[8 + 2 * k], s->s2[k]);
    }
    return strata_csum(seed ^ len, words, sizeof(words));
}

#include <immintrin.h>

/* The same sums with 32-byte vectors (lanes 0-1 and 2-3 of the SSE2 form),
 * so both variants give identical checksums.  Continues the sums in *s over
 * the whole lines of [p, p+len); returns how many bytes that was. */
__attribute__((target("avx2"))) static size_t lines_avx2(struct sums *s, char *d, const char *p, size_t len,
                                                        int nontemporal)
{
    __m256i a1 = _mm256_set_m128i(s->s1[1], s->s1[0]), a2 = _mm256_set_m128i(s->s1[3], s->s1[2]);
    __m256i b1 = _mm256_set_m128i(s->s2[1], s->s2[0]), b2 = _mm256_set_m128i(s->s2[3], s->s2[2]);
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        if (d && nontemporal) {
            _mm256_stream_si256((__m256i *)(d + i), v0);
            _mm256_stream_si256((__m256i *)(d + i + 32), v1);
        } else if (d) {
            _mm256_storeu_si256((__m256i *)(d + i), v0);
            _mm256_storeu_si256((__m256i *)(d + i + 32), v1);
        }
        a1 = _mm256_add_epi64(a1, v0);
        b1 = _mm256_add_epi64(b1, a1);
        a2 = _mm256_add_epi64(a2, v1);
        b2 = _mm256_add_epi64(b2, a2);
    }
    s->s1[0] = _mm256_castsi256_si128(a1);
    s->s1[1] = _mm256_extracti128_si256(a1, 1);
    s->s1[2] = _mm256_castsi256_si128(a2);
    s->s1[3] = _mm256_extracti128_si256(a2, 1);
    s->s2[0] = _mm256_castsi256_si128(b1);
    s->s2[1] = _mm256_extracti128_si256(b1, 1);
    s->s2[2] = _mm256_castsi256_si128(b2);
    s->s2[3] = _mm256_extracti128_si256(b2, 1);
    _mm256_zeroupper();
    return i;
}

/* The SSE2 form of lines_avx2 */
static size_t lines_sse2(struct sums *s, char *d, const char *p, size_t len, int nontemporal)
{
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m128i v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm_loadu_si128((const __m128i *)(p + i + 16 * k));
        if (d && nontemporal)
            for (int k = 0; k < 4; k++)
                _mm_stream_si128((__m128i *)(d + i + 16 * k), v[k]);
        else if (d)
            for (int k = 0; k < 4; k++)
                _mm_storeu_si128((__m128i *)(d + i + 16 * k), v[k]);
        add_line(s, v);
    }
    return i;
}

static int have_avx2 = -1;

static void sums_init(struct sums *s)
{
    for (int k = 0; k < 4; k++)
        s->s1[k] = s->s2[k] = _mm_setzero_si128();
}

/* The whole lines of [p, p+len) into *s (copied to d when d != NULL). */
static size_t lines(struct sums *s, char *d, const char *p, size_t len, int nontemporal)
{
    if (have_avx2 < 0)
        have_avx2 = __builtin_cpu_supports("avx2");
    /* d must be 32-byte aligned for 256-bit streaming stores */
    if (have_avx2 && ((uintptr_t)d % 32) == 0)
        return lines_avx2(s, d, p, len, nontemporal);
    return lines_sse2(s, d, p, len, nontemporal);
}

/* The last partial line (zero-padded) into *s, then the checksum. */
static uint32_t finish(struct sums *s, char *d, const char *p, size_t rest, uint64_t seed, size_t len)
{
    if (rest > 0) {
        char tail[64] = {0};
        memcpy(tail, p, rest);
        if (d)
            memcpy(d, tail, rest);
        __m128i v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm_loadu_si128((const __m128i *)(tail + 16 * k));
        add_line(s, v);
    }
    return fold(s, seed, len);
}

uint32_t strata_copy_csum(void *dst, const void *src, size_t len, uint64_t seed, int nontemporal)
{
    struct sums s;
    sums_init(&s);
    size_t i = lines(&s, dst, src, len, nontemporal);
    return finish(&s, dst ? (char *)dst + i : NULL, (const char *)src + i, len - i, seed, len);
}

/* strata_data_csum of [src, src+len), flushing it a stretch at a time with
 * flush(addr, n) right after the stretch is summed: one pass over the lines
 * instead of a flush pass and a checksum pass (the second read the lines
 * the flush had just written back).  Every byte of the range is flushed
 * once; the caller drains. */
#define CSUM_FLUSH_STRETCH 4096
uint32_t strata_csum_flush(const void *src, size_t len, uint64_t seed,
                           void (*flush)(const void *addr, size_t len))
{
    struct sums s;
    sums_init(&s);
    const char *p = src;
    size_t i = 0;
    while (len - i >= 64) {
        size_t n = len - i < CSUM_FLUSH_STRETCH ? len - i : CSUM_FLUSH_STRETCH;
        size_t done = lines(&s, NULL, p + i, n, 0);
        flush(p + i, done);
        i += done;
    }
    uint32_t c = finish(&s, NULL, p + i, len - i, seed, len);
    if (i < len)
        flush(p + i, len - i);
    return c;
}
