/*
 * Start-up, configuration, real-symbol lookup, fork handling and shutdown:
 * the top of libzio (the state they set up lives in zio_base.c).
 *
 * Environment (set by `zio run` / `zio profile`):
 *   ZIO_MODE=elide|profile|off   ZIO_THRESHOLD=bytes (16384)
 *   ZIO_RATIO=fraction (0.06)    ZIO_GC_MAX=entries (1024)
 *   ZIO_GC_AGE_MS=ms (1000)      ZIO_VERBOSE=1   ZIO_FORCE_FALLBACK=1
 */
#include "zio_internal.h"

#include "kb/stats.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "kb/env.h"

#define TAB_CAP 16384

/* f if it lies in the same object as g (NULL otherwise) */
static void *same_object(void *f, void *g)
{
    Dl_info a, b;
    if (f == NULL || g == NULL || !dladdr(f, &a) || !dladdr(g, &b) || a.dli_fbase != b.dli_fbase)
        return NULL;
    return f;
}

static void resolve_reals(void)
{
    static int resolving;
    if (zio_real.free || __atomic_exchange_n(&resolving, 1, __ATOMIC_ACQ_REL))
        return;
    zio_real.memmove = zio_next("memmove");
    zio_real.malloc = zio_next("malloc");
    zio_real.realloc = zio_next("realloc");
    zio_real.malloc_usable_size = zio_next("malloc_usable_size");
    zio_real.free = zio_next("free");
    zio_real.xallocx = same_object(zio_next("xallocx"), (void *)zio_real.malloc);
    __atomic_store_n(&zio_real.memcpy, zio_next("memcpy"), __ATOMIC_RELEASE);
}

static size_t env_size(const char *name, size_t def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    return *end ? def : (size_t)x;
}

static void read_config(void)
{
    zio_cfg.threshold = env_size("ZIO_THRESHOLD", zio_cfg.threshold);
    if (zio_cfg.threshold < ZIO_PAGE)
        zio_cfg.threshold = ZIO_PAGE;   /* elision is page granular */
    const char *r = kb_getenv("ZIO_RATIO");
    if (r && *r)
        zio_cfg.ratio = strtod(r, NULL);
    zio_cfg.gc_max = env_size("ZIO_GC_MAX", zio_cfg.gc_max);
    if (zio_cfg.gc_max < 16)
        zio_cfg.gc_max = 16;
    if (zio_cfg.gc_max > TAB_CAP / 2)
        zio_cfg.gc_max = TAB_CAP / 2;
    zio_cfg.gc_age_ns = env_size("ZIO_GC_AGE_MS", 1000) * 1000000ULL;
    zio_cfg.verbose = env_size("ZIO_VERBOSE", 0) != 0;
    zio_cfg.link_max = env_size("ZIO_LINK_MAX", zio_cfg.link_max);
    zio_cfg.link_out_min = env_size("ZIO_LINK_OUT_MIN", zio_cfg.link_out_min);
}

/* fork: the child gets no userfaultfd context, so every intermediate is
 * materialised first, and none may appear until the fork is done.  The
 * prepare handler does not hold zio_lock across the fork: other prepare
 * handlers run after it (jemalloc takes its arena locks), and a thread
 * holding such a lock may be waiting for zio_lock (jemalloc's background
 * thread purging through the interposed madvise) -- Redis BGREWRITEAOF hung
 * that way.  zio_forking (zio_base.c) stops elisions instead (copy_collect). */

static void fork_prepare(void)
{
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    zio_forking++;
    if (zio_mode == ZIO_ELIDE && zio_tab_n > 0) {
        ctr_add(C_FORK_RESOLVES, 1);
        track_drop_all();
    }
    pthread_mutex_unlock(&zio_lock);
}

static void fork_parent(void)
{
    pthread_mutex_lock(&zio_lock);
    zio_forking--;
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
}

static void fork_child(void)
{
    /* no handler thread and no userfaultfd context here: plain copies.
     * Another thread may have held zio_lock at the fork: start afresh. */
    zio_mode = ZIO_OFF;
    zio_tab_n = 0;
    zio_inter_n = 0;
    srcidx_reset();
    vma_reset();
    zio_forking = 0;
    pthread_mutex_init(&zio_lock, NULL);
    zio_in_lib--;
}

static int owner_pid;

static void zio_init(void)
{
    resolve_reals();
    read_config();
    const char *mode = kb_getenv("ZIO_MODE");
    int want = ZIO_ELIDE;
    if (mode && strcmp(mode, "profile") == 0)
        want = ZIO_PROFILE;
    else if (mode && strcmp(mode, "off") == 0)
        return;
    void *tab = mmap(NULL, TAB_CAP * sizeof(struct zio_entry), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (tab == MAP_FAILED || srcidx_init(TAB_CAP) != 0)
        return;
    zio_tab = tab;
    zio_tab_cap = TAB_CAP;
    owner_pid = getpid();
    stats_open();
    if (want == ZIO_ELIDE && uffd_open() != 0)
        return;   /* fallback: plain copies; counters still show copies */
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    zio_mode = want;
}

void zio_ensure_init(void)
{
    static int state;   /* 0 not started, 1 running, 2 done */
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == 2)
        return;
    int expect = 0;
    if (!__atomic_compare_exchange_n(&state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        resolve_reals();   /* another thread (or we, recursively) is initialising */
        return;
    }
    zio_in_lib++;
    zio_init();
    zio_in_lib--;
    __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void zio_ctor(void)
{
    zio_ensure_init();
}

__attribute__((destructor)) static void zio_dtor(void)
{
    if (getpid() != owner_pid)
        return;
    if (zio_mode == ZIO_PROFILE)
        profile_report();
    stats_close();
}
