/*
 * Why a set of mkfs parameters does not make a pool: one sentence naming the
 * parameter (as `strata mkfs` spells it) and the limit it breaks, instead of
 * a bare EINVAL.  The limits are those of pool_layout(); this file only
 * finds which one failed and, for a pool too small, the smallest size that
 * fits the other parameters.
 */
#include "strata_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *human(uint64_t n, char *buf, size_t len)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (n >= 1024 && n % 1024 == 0 && u < 3) {
        n /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, len, "%llu", (unsigned long long)n);
    else
        snprintf(buf, len, "%llu%c", (unsigned long long)n, units[u]);
    return buf;
}

static int fits(struct strata_super t, uint64_t size)
{
    t.pool_size = size;
    return pool_layout(&t) == 0;
}

/* Smallest whole-MiB pool size the other parameters fit in (0: none). */
static uint64_t min_size(const struct strata_super *t)
{
    uint64_t hi = 1ull << 20;
    while (!fits(*t, hi))
        if ((hi <<= 1) > (1ull << 44))
            return 0;
    uint64_t lo = hi / 2; /* lo does not fit (or is below 1M) */
    while (hi - lo > (1u << 20)) {
        uint64_t mid = (lo + hi) / 2 / (1u << 20) * (1u << 20);
        if (fits(*t, mid))
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

int strata_mkfs_explain(const char *pool_path, uint64_t size, uint32_t nslots, uint64_t log_bytes,
                        uint32_t ninodes, uint64_t ref_bytes, char *msg, size_t len)
{
    struct strata_super t = {.pool_size = size, .nslots = nslots ? nslots : 16,
                             .log_bytes = log_bytes ? log_bytes : (8u << 20),
                             .ninodes = ninodes ? ninodes : 4096, .ref_bytes = ref_bytes};
    if (t.pool_size == 0)
        t.pool_size = pool_default_size(pool_path);
    char a[32], b[32], c[32], d[32];
    msg[0] = 0;
    struct strata_super chk = t;
    if (pool_layout(&chk) == 0)
        return 0;
    if (t.pool_size % STRATA_BLOCK)
        snprintf(msg, len, "--size %llu is not a multiple of %d", (unsigned long long)t.pool_size, STRATA_BLOCK);
    else if (t.pool_size / STRATA_BLOCK > UINT32_MAX)
        snprintf(msg, len, "--size %s is too large: at most 2^32 blocks of %d (16T)", human(t.pool_size, a, 32),
                 STRATA_BLOCK);
    else if (t.nslots > 256)
        snprintf(msg, len, "--slots %u is too many: at most 256 log slots", t.nslots);
    else if (t.log_bytes % STRATA_BLOCK || t.log_bytes < 64 * 1024)
        snprintf(msg, len, "--log-size %s must be a multiple of %d and at least 64K", human(t.log_bytes, a, 32),
                 STRATA_BLOCK);
    else if (t.ninodes < 16)
        snprintf(msg, len, "--inodes %u is too few: at least 16", t.ninodes);
    else if (ref_bytes && (ref_bytes % STRATA_BLOCK || ref_bytes < STRATA_REF_TABLE + STRATA_BLOCK))
        snprintf(msg, len, "--ref-size %s must be a multiple of %d and at least %d (its first page is the TAS "
                 "ownership table)", human(ref_bytes, a, 32), STRATA_BLOCK, STRATA_REF_TABLE + STRATA_BLOCK);
    else if (ref_bytes > t.pool_size)
        snprintf(msg, len, "--ref-size %s is larger than --size %s", human(ref_bytes, a, 32),
                 human(t.pool_size, b, 32));
    if (msg[0]) {
        errno = EINVAL;
        return -1;
    }
    /* everything is in range on its own: the pool is too small for the rest */
    uint64_t need = min_size(&t);
    char n[32];
    if (need)
        snprintf(n, sizeof(n), "at least %s", human(need, a, 32));
    else
        snprintf(n, sizeof(n), "more than 16T");
    snprintf(msg, len,
             "--size %s is too small for %u log slots of %s (--slots, --log-size: %s) plus %u inodes and their "
             "directory table (--inodes), the block bitmap, a ref area of %s (--ref-size, default --size/8) "
             "and 16 data blocks: it needs %s, or fewer or smaller logs",
             human(t.pool_size, b, 32), t.nslots, human(t.log_bytes, c, 32),
             human((uint64_t)t.nslots * t.log_bytes, a, 32), t.ninodes,
             human(chk.ref_bytes, d, 32), n);
    errno = EINVAL;
    return -1;
}
