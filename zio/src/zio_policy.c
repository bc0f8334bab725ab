/*
 * Mis-speculation policy (dissertation 4.2.1.6).
 *
 * Window: bytes are accounted per *input call site* (the return address of
 * the interposed read/recv, or of the zio_register_original caller), with an
 * exponentially decaying window (both sums halve whenever the elided sum
 * passes 64 MiB).  A call site is the natural unit: one code path fills its
 * buffers the same way every time, while buffer addresses change with every
 * allocation (Redis reads into a different query buffer position each time).
 * When faulted bytes exceed ratio x elided bytes, the site stops being
 * tracked: its next 64 inputs are not recorded as originals and copies out
 * of its existing originals are done plainly; then the sums restart and the
 * site is probed again.
 */
#include "zio_internal.h"

#define POL_SLOTS 128
#define POL_WINDOW (64ULL << 20)
#define POL_SKIP_INPUTS 64

struct pol {
    uintptr_t key;
    uint64_t elided, faulted;
    uint32_t skip;
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
    if (p->elided > POL_WINDOW) {
        p->elided /= 2;
        p->faulted /= 2;
    }
}

void policy_faulted(uintptr_t key, size_t bytes)
{
    struct pol *p = pol_get(key);
    p->faulted += bytes;
    if (p->skip == 0 && (double)p->faulted > zio_cfg.ratio * (double)p->elided) {
        p->skip = POL_SKIP_INPUTS;
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
    p->skip--;
    return 0;
}
