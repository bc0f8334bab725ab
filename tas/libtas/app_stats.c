/* libtas core: its counters, kept locally until published as the stats
 * page kbstats.libtas.<instance> (include/kb/stats.h; `tasctl app-stats`). */
#include <errno.h>

#include "app_internal.h"
#include "kb/stats.h"

static const char *const names[RXC_N] = {
    [RXC_BYTES] = "rx_bytes",
    [RXC_REGISTERED] = "rx_registered_bytes",
    [RXC_HELD] = "rx_bytes_held",
    [RXC_HELD_PEAK] = "rx_bytes_held_peak",
    [RXC_RELEASED_HELD] = "rx_released_checked_bytes",
    [RXC_RELEASE_BUSY] = "rx_release_busy",
    [RXC_STRATA_BUSY] = "rx_release_strata_busy",
    [RXC_FORCED] = "rx_forced_releases",
    [RXC_FORCED_PRESSURE] = "rx_forced_pressure",
    [RXC_FORCED_CLOSE] = "rx_forced_close",
    [RXC_FORCED_FORK] = "rx_forced_fork",
    [RXC_FORCED_BYTES] = "rx_forced_bytes",
    [RXC_DIGESTS] = "rx_strata_digests",
    [RXC_PRESSURE_DIGESTS] = "rx_pressure_digests",
    [RXC_DIGEST_KICKS] = "rx_digest_kicks",
    [RXC_COPIES] = "rx_copies",
    [RXC_COPIES_SMALL] = "rx_copies_small",
    [RXC_COPIES_CONTINUED] = "rx_copies_continued",
    [RXC_BUMPS] = "rx_bumps",
    [RXC_PINNED] = "threads_pinned",
    [RXC_SHIM + TAS_SHIM_SENDFILE_CALLS] = "sendfile_calls",
    [RXC_SHIM + TAS_SHIM_SENDFILE_BYTES] = "sendfile_bytes",
    [RXC_SHIM + TAS_SHIM_TO_KERNEL] = "sockets_to_kernel",
    [RXC_SHIM + TAS_SHIM_KERNEL_TWINS] = "listeners_kernel_twin",
    [RXC_SHIM + TAS_SHIM_KERNEL_ACCEPTS] = "accepts_from_kernel",
    [RXC_SHIM + TAS_SHIM_CLAIMS] = "conns_claimed",
    [RXC_SHIM + TAS_SHIM_CLAIMS_FAILED] = "conns_claim_failed",
    [RXC_SHIM + TAS_SHIM_CLOSES_FORKED] = "closes_left_to_children",
    [RXC_SHIM + TAS_SHIM_WAKEUPS_LATE] = "wakeups_late",
};

void tas_app_count(struct tas_app *a, enum tas_shim_counter c, uint64_t n)
{
    if (a != NULL && c < TAS_SHIM_N)
        __atomic_add_fetch(a->ctr[RXC_SHIM + c], n, __ATOMIC_RELAXED);
}

void app_stats_init(struct tas_app *a)
{
    for (int i = 0; i < RXC_N; i++)
        a->ctr[i] = &a->ctr_local[i];
}

int tas_app_stats_publish(struct tas_app *a, const char *instance)
{
    struct kb_stats_page *p = kb_stats_create("libtas", instance);
    if (p == NULL)
        return -errno;
    for (int i = 0; i < RXC_N; i++) {
        uint64_t *c = kb_stats_counter(p, names[i]);
        *c = a->ctr_local[i];  /* counted before the page existed */
        a->ctr[i] = c;
    }
    if (a->stats != NULL)
        kb_stats_close(a->stats, NULL, NULL, 0);
    a->stats = p;
    return 0;
}

void app_stats_close(struct tas_app *a)
{
    if (a->stats != NULL)
        kb_stats_close(a->stats, NULL, NULL, 0);   /* the file stays: see unlink */
    a->stats = NULL;
}

void tas_app_stats_unlink(const char *instance)
{
    kb_stats_close(NULL, "libtas", instance, 1);
}
