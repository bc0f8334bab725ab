/*
 * One stats format for every component (architecture contract 6).
 *
 * Each component instance publishes one 16 KiB page of named 64-bit counters
 * (version 2; version 1 pages were 4 KiB and held 100)
 * in a file under /dev/shm (kbstats.<component>.<instance>).  The daemon,
 * libzio and libstrata write it; `tasctl stats`, `zio stats` and
 * `strata stat` read it with the same reader (bindings/stats.py).
 *
 * Writers only ever append counters (name first, then ncounters is bumped
 * with a release store), so a reader never sees a half-registered name.
 * Counter values are updated with relaxed atomic adds.
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by cffi.
 */
#ifndef KB_STATS_H
#define KB_STATS_H

#include <stdint.h>

/* CDEF-BEGIN */
#define KB_STATS_MAGIC 0x5453424b
#define KB_STATS_VERSION 2
#define KB_STATS_PAGE_SIZE 16384
#define KB_STATS_NAME_LEN 32
#define KB_STATS_MAX 400

struct kb_stats_counter {
    char name[32];
    uint64_t value;
};

struct kb_stats_page {
    uint32_t magic;
    uint32_t version;
    uint32_t ncounters;
    int32_t pid;
    char component[16];
    struct kb_stats_counter c[400];
};
/* CDEF-END */

_Static_assert(sizeof(struct kb_stats_page) <= KB_STATS_PAGE_SIZE,
               "stats page must fit one page");
_Static_assert(sizeof(((struct kb_stats_counter *)0)->name) == KB_STATS_NAME_LEN,
               "name length mismatch");

/*
 * Publish a fresh stats page /dev/shm/kbstats.<component>.<instance>,
 * replacing whatever was at that name without following links; mode 0600
 * (the _mode form: that mode, and group gid unless gid < 0).
 * Returns NULL on failure (errno set); callers keep running without stats.
 */
struct kb_stats_page *kb_stats_create(const char *component, const char *instance);
struct kb_stats_page *kb_stats_create_mode(const char *component, const char *instance,
                                           unsigned mode, int gid);

/* Map a page anonymously (no file): for processes that must not leave files. */
struct kb_stats_page *kb_stats_anon(const char *component);

/* Register a counter by name (idempotent); returns a pointer to its value,
 * or a pointer to a static sink if the page is NULL or full. */
uint64_t *kb_stats_counter(struct kb_stats_page *page, const char *name);

/* Unmap and (if unlink_file) remove the page's file. */
/* Unlink this component's pages whose writer process is gone (killed
 * before it could remove its own); kb_stats_create does it first. */
void kb_stats_sweep(const char *component);
void kb_stats_close(struct kb_stats_page *page, const char *component,
                    const char *instance, int unlink_file);

static inline void kb_stats_add(uint64_t *ctr, uint64_t n)
{
    __atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

static inline void kb_stats_set(uint64_t *ctr, uint64_t v)
{
    __atomic_store_n(ctr, v, __ATOMIC_RELAXED);
}

#endif
