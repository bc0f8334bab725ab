/*
 * libzio's counters in the shared stats page /dev/shm/kbstats.zio.<pid>
 * (architecture contract 6).  The page file is removed at exit; the mapping
 * stays until the process ends because later destructors may still copy.
 */
#include "zio_internal.h"

#include "kb/stats.h"

#include <stdio.h>
#include <unistd.h>

static const char *const names[C_NCTR] = {
    [C_COPIES_SEEN] = "copies_seen",           /* copies >= threshold */
    [C_COPIES_ELIDED] = "copies_elided",       /* elided pieces */
    [C_BYTES_ELIDED] = "bytes_elided",
    [C_FRINGE_BYTES] = "fringe_bytes_copied",  /* eager bytes of eliding copies */
    [C_COPIES_PLAIN] = "copies_plain",
    [C_FAULTS_MISSING] = "faults_intermediate",
    [C_FAULTS_WP] = "faults_original_write",
    [C_FAULTS_ZERO] = "faults_untracked",
    [C_PAGES_FILLED] = "pages_filled",
    [C_SPLITS] = "entry_splits",
    [C_POLICY_FALLBACKS] = "policy_fallbacks",
    [C_POLICY_DISABLED] = "policy_sites_disabled",
    [C_GC_RUNS] = "gc_runs",
    [C_GC_EVICTIONS] = "gc_evictions",
    [C_GC_FREES] = "gc_deferred_frees_done",
    [C_ENTRIES_LIVE] = "entries_live",
    [C_ORIGINALS] = "originals_recorded",
    [C_INPUTS_RECORDED] = "inputs_recorded",
    [C_OUTPUTS_RESOLVED] = "outputs_resolved",
    [C_OUTPUT_PIECES] = "output_iov_pieces",
    [C_FREES_INTER] = "frees_intermediate",
    [C_FREES_DEFERRED] = "frees_original_deferred",
    [C_API_REGISTER] = "api_register",
    [C_API_RESOLVE] = "api_resolve",
    [C_API_RELEASE] = "api_release",
    [C_FORK_RESOLVES] = "fork_resolves",
    [C_UFFD_ERRORS] = "uffd_errors",
    [C_NOT_ANON] = "not_anonymous_fallbacks",
    [C_MOVES_REPOINTED] = "moves_repointed",         /* overlapping moves re-pointed */
    [C_BYTES_PLAIN_LARGE] = "bytes_plain_large",     /* copies >= threshold done plainly */
    [C_RELEASE_FILL_BYTES] = "release_fill_bytes",   /* pushed to dependents by zio_release */
    [C_API_TRY_RELEASE] = "api_release_if_unshared",
    [C_API_RELEASE_BUSY] = "api_release_busy",       /* ... answered 1 */
    [C_OUTPUTS_MATERIALIZED] = "outputs_materialized", /* tracked output sent plainly */
    [C_BYTES_ADOPTED] = "stream_bytes_adopted",     /* copied earlier, elided by a later piece */
    [C_FILLS_SPLIT] = "fills_split_at_vma",         /* a fill crossed a VMA boundary */
    [C_SYS_REGISTER] = "sys_uffd_register",          /* UFFDIO_REGISTER ioctls */
    [C_SYS_UNREGISTER] = "sys_uffd_unregister",      /* UFFDIO_UNREGISTER ioctls */
    [C_SYS_PROTECT] = "sys_uffd_writeprotect",       /* UFFDIO_WRITEPROTECT ioctls */
    [C_SYS_FILL] = "sys_uffd_fill",                  /* UFFDIO_COPY/ZEROPAGE/WAKE ioctls */
    [C_SYS_MINCORE] = "sys_mincore",
    [C_SYS_MADVISE] = "sys_madvise",                 /* libzio's own MADV_DONTNEED */
    [C_VMA_HITS] = "vma_kind_cache_hits",            /* mapping kind known (zio_vma.c) */
    [C_VMA_MAPS_READS] = "vma_maps_reads",           /* ... learned from /proc/self/maps */
    [C_IDLE_ZEROED] = "idle_pages_zero_filled",      /* before a plain write (zio_reg.c) */
    [C_COPIES_LINKED] = "copies_linked",             /* large copies done plainly and linked */
    [C_BYTES_LINKED] = "bytes_linked",               /* bytes linked to stack originals */
    [C_LINK_OUT_BYTES] = "link_bytes_resolved",      /* output bytes sent as their original */
    [C_LINK_MISMATCH] = "link_mismatches",           /* linked bytes changed: sent as they are */
    [C_LINKS_LIVE] = "links_live",
    [C_REALLOCS_IN_PLACE] = "reallocs_tracked_in_place", /* grown where it was (xallocx) */
    [C_REALLOCS_MOVED] = "reallocs_tracked_moved",       /* malloc + interposed copy + free */
};

static uint64_t sink[C_NCTR];
uint64_t *zio_ctr[C_NCTR] = {
#define S(i) [i] = &sink[i]
    S(0), S(1), S(2), S(3), S(4), S(5), S(6), S(7), S(8), S(9), S(10), S(11), S(12), S(13),
    S(14), S(15), S(16), S(17), S(18), S(19), S(20), S(21), S(22), S(23), S(24), S(25),
    S(26), S(27), S(28), S(29), S(30), S(31), S(32), S(33), S(34), S(35), S(36), S(37),
    S(38), S(39), S(40), S(41), S(42), S(43), S(44), S(45), S(46), S(47), S(48), S(49),
    S(50), S(51),
#undef S
};
_Static_assert(C_NCTR == 52, "extend the sink initialiser");

static struct kb_stats_page *page;
static char instance[16];

void stats_open(void)
{
    snprintf(instance, sizeof(instance), "%d", (int)getpid());
    page = kb_stats_create("zio", instance);
    for (int i = 0; i < C_NCTR; i++)
        zio_ctr[i] = kb_stats_counter(page, names[i]);
}

void stats_close(void)
{
    if (page)
        kb_stats_close(NULL, "zio", instance, 1);   /* unlink only, keep mapped */
}
