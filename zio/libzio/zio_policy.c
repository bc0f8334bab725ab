/*
 * Mis-speculation policy (dissertation 4.2.1.6).
 *
 * Window: bytes are accounted per *input call site* (the return address of
 * the interposed read/recv, or of the zio_register_original caller), with an
 * exponentially decaying window (both sums halve whenever the elided sum
 * passes 64 MiB).  A call site is the natural unit: one code path fills its
 * buffers the same way every time, while buffer addresses change with every
 * allocation (Redis reads into a different query buffer position each time).
 * When faulted bytes exceed ratio x elided bytes (judged once the site has
 * elided at least POL_MIN_SAMPLE), the site stops being
 * tracked: its next N inputs are not recorded as originals and copies out
 * of its existing originals are done plainly; then the sums restart and the
 * site is probed again.  N starts at 64 and doubles (up to 64 Ki inputs)
 * each time a probe fails again; a site that then elides 16 MiB without
 * failing is back to 64.
 */
#include "zio_internal.h"

#define POL_SLOTS 128
#define POL_WINDOW (64ULL << 20)
#define POL_SKIP_MIN 64
#define POL_SKIP_MAX 65536
#define POL_PROVEN (16ULL << 20)
/* No verdict on a site before it has elided this much: one early fault (a
 * page a server reads back from its first input) would otherwise exceed the
 * ratio against an almost empty window and turn the site off at once. */
#define POL_MIN_SAMPLE (1ULL << 20)

struct pol {
    uintptr_t key;
    uint64_t elided, faulted;
    uint32_t skip, backoff;
};

static struct pol pol[POL_SLOTS];

static struct pol *pol_get(uintptr_t key)
{
    size_t h = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 57) % POL_SLOTS;
    for (size_t k = 0; k < POL_SLOTS; k++) {
        struct pol *p = &pol[(h + k) % POL_SLOTS];
        if (p->key == key)
            return p;
        if (p->key == 0) {
            p->key = key;
            return p;
        }
    }
    struct pol *p = &pol[h];   /* table full: recycle the home slot */
    *p = (struct pol){ .key = key };
    return p;
}

int policy_allows(uintptr_t key)
{
    return pol_get(key)->skip == 0;
}

void policy_elided(uintptr_t key, size_t bytes)
{
    struct pol *p = pol_get(key);
    p->elided += bytes;
    if (p->elided > POL_PROVEN)
        p->backoff = POL_SKIP_MIN;
    if (p->elided > POL_WINDOW) {
        p->elided /= 2;
        p->faulted /= 2;
    }
}

void policy_faulted(uintptr_t key, size_t bytes)
{
    struct pol *p = pol_get(key);
    p->faulted += bytes;
    if (p->skip == 0 && p->elided >= POL_MIN_SAMPLE &&
        (double)p->faulted > zio_cfg.ratio * (double)p->elided) {
        if (p->backoff < POL_SKIP_MIN)
            p->backoff = POL_SKIP_MIN;
        p->skip = p->backoff;
        if (p->backoff < POL_SKIP_MAX)
            p->backoff *= 2;
        p->elided = p->faulted = 0;
        ctr_add(C_POLICY_DISABLED, 1);
    }
}

/* One input from this site; returns 1 when it should be recorded. */
int policy_input(uintptr_t key)
{
    struct pol *p = pol_get(key);
    if (p->skip == 0)
        return 1;
    if (--p->skip == 0)
        p->elided = p->faulted = 0;   /* the probe starts from a clean window */
    return 0;
}
