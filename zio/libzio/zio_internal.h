/*
 * libzio internals shared by its translation units.
 *
 * Locking: one global mutex (zio_lock) protects the tracking table, the
 * policy table and the deferred-free list.  While holding it, libzio never
 * touches application memory that could be an unmapped intermediate or a
 * write-protected original (that would fault into the handler thread, which
 * needs the same lock).  Data moves under the lock only through userfaultfd
 * ioctls whose source is an original, and originals are always mapped.
 * Eager copies (fringes, plain fallbacks) run after unlocking, where a fault
 * is simply served by the handler thread.
 */
#ifndef ZIO_INTERNAL_H
#define ZIO_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define ZIO_PAGE 4096UL
#define ZIO_EXPORT __attribute__((visibility("default")))

static inline uintptr_t pg_floor(uintptr_t a) { return a & ~(ZIO_PAGE - 1); }
static inline uintptr_t pg_ceil(uintptr_t a) { return (a + ZIO_PAGE - 1) & ~(ZIO_PAGE - 1); }

enum zio_mode { ZIO_OFF = 0, ZIO_ELIDE = 1, ZIO_PROFILE = 2 };

/* ---- configuration and shared state (zio_base.c; read at start by zio_init.c) ---- */
struct zio_config {
    size_t threshold;      /* minimum core bytes for an elision */
    double ratio;          /* mis-speculation limit, faulted/elided */
    size_t gc_max;         /* entry count that triggers an LRU eviction */
    uint64_t gc_age_ns;    /* periodic GC evicts entries idle this long */
    size_t link_max;       /* copies from stack originals below it: linked, not elided */
    size_t link_out_min;   /* a linked part output on its own: sent as its original from here */
    int verbose;
};
extern struct zio_config zio_cfg;
extern volatile int zio_mode;          /* enum zio_mode */
extern pthread_mutex_t zio_lock;
extern __thread int zio_in_lib;        /* reentrancy guard */
/* set by zio_copy_continued: the stack under this read placed the bytes
 * (and registered its originals), so the read records no input */
extern __thread int zio_stack_input;
extern int zio_forking;                /* zio_lock: forks in progress, no elision */

void zio_ensure_init(void);             /* zio_init.c */
uint64_t zio_now_ns(void);
void zio_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void zio_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- real functions (zio_base.c; resolved by zio_init.c) ---- */
struct zio_real {
    void *(*memcpy)(void *, const void *, size_t);
    void *(*memmove)(void *, const void *, size_t);
    void (*free)(void *);
    void *(*realloc)(void *, size_t);
    void *(*malloc)(size_t);
    size_t (*malloc_usable_size)(void *);
    /* jemalloc's resize in place (never moves), when malloc is jemalloc's */
    size_t (*xallocx)(void *, size_t, size_t, int);
};
extern struct zio_real zio_real;
void *zio_next(const char *name);
void *zio_plain_copy(void *d, const void *s, size_t n);
void *zio_plain_move(void *d, const void *s, size_t n);
/* append [base, base+len) to out[0..k) (joined to a contiguous last one);
 * the new count, or -1 with E2BIG when max are taken */
int iov_emit(struct iovec *out, int k, int max, uintptr_t base, size_t len);

/* ---- tracking table (zio_table.c) ---- */
enum { ZE_ORIGINAL = 0, ZE_INTER = 1 };

struct zio_entry {
    uintptr_t addr;      /* core start, page aligned */
    size_t npages;       /* core length in base pages */
    uintptr_t orig;      /* page of the original holding the first byte */
    uint32_t lfringe;    /* byte offset into that page: addr's content */
    uint8_t kind;        /* ZE_ORIGINAL (identity) or ZE_INTER */
    uint8_t protect;     /* original: currently write-protected */
    uint8_t freed;       /* original: app freed it, real free deferred */
    uint8_t flags;       /* ZIO_ORIG_* for originals */
    uint64_t last_use;   /* ns of last copy from/to it (LRU GC) */
    uintptr_t key;       /* policy bucket (the IO buffer it came from) */
};

static inline uintptr_t ze_end(const struct zio_entry *e) { return e->addr + e->npages * ZIO_PAGE; }
static inline uintptr_t ze_src(const struct zio_entry *e) { return e->orig + e->lfringe; }

extern struct zio_entry *zio_tab;
extern size_t zio_tab_n, zio_tab_cap;
extern size_t zio_inter_n;   /* how many entries are intermediates */
extern uintptr_t zio_hull_lo, zio_hull_hi;    /* bounds of all entries */

int tab_find(uintptr_t a);                  /* entry containing a, or -1 */
size_t tab_lower(uintptr_t a);              /* first entry with end > a */
int tab_insert(const struct zio_entry *e);  /* -1 when full */
/* intermediate e continues the one before it: extend that one (0) or -1 */
int tab_extend_inter(const struct zio_entry *e);
void tab_remove(size_t i);
void tab_cut(size_t i, uintptr_t lo, uintptr_t hi); /* drop pages [lo,hi) */
void tab_set_src(struct zio_entry *e, uintptr_t src);
int tab_overlaps(uintptr_t lo, uintptr_t hi);   /* lock-free hint */

/* ---- source index of the intermediates (zio_srcidx.c), zio_lock held ---- */
int srcidx_init(size_t cap);
void srcidx_reset(void);
void srcidx_add(const struct zio_entry *e);   /* by zio_table.c only */
void srcidx_del(const struct zio_entry *e);
/* an intermediate whose source overlaps [lo,hi): 1 and its core address */
int srcidx_find(uintptr_t lo, uintptr_t hi, uintptr_t *addr);

/* ---- userfaultfd primitives (zio_uffd.c) ---- */
int uffd_open(void);                        /* 0 ok, -1 unusable */
int uffd_register(uintptr_t lo, uintptr_t hi, int wp);
void uffd_unregister(uintptr_t lo, uintptr_t hi);
int uffd_protect(uintptr_t lo, uintptr_t hi, int on);
int uffd_try_protect(uintptr_t lo, uintptr_t hi);
int uffd_fill(uintptr_t dst, uintptr_t src, size_t len);
void uffd_zero(uintptr_t page);
#define UFFD_ZERO_MAX (16 * ZIO_PAGE)
void uffd_populate_zero(uintptr_t lo, uintptr_t hi);
void uffd_wake(uintptr_t lo, size_t len);
extern int zio_uffd;
/* zio_fault.c: the thread serving the faults (and the 1 s GC) */
void fault_handler_start(void);  /* idempotent, lock not held */

/* ---- idle MISSING registrations (zio_reg.c), zio_lock held but the hint ---- */
int reg_overlaps(uintptr_t lo, uintptr_t hi);   /* lock-free hint */
int reg_any(uintptr_t lo, uintptr_t hi);        /* exact */
void reg_keep(uintptr_t lo, uintptr_t hi);
void reg_take(uintptr_t lo, uintptr_t hi);
void reg_drop(uintptr_t lo, uintptr_t hi);
void reg_prepare_write(uintptr_t lo, uintptr_t hi);
/* unregister [lo,hi), idle or not (every unregistration outside zio_reg.c) */
void reg_unregister(uintptr_t lo, uintptr_t hi);
int reg_fault(uintptr_t a);

/* ---- mapping kinds (zio_vma.c) ---- */
/* zio_lock held: 1 when [lo,hi) is private anonymous memory (MADV_DONTNEED
 * makes its pages absent), 0 otherwise or when it cannot tell */
int vma_private_anon(uintptr_t lo, uintptr_t hi);
void vma_note_mapped(uintptr_t lo, uintptr_t hi, int anon);   /* a new mapping */
void vma_forget(uintptr_t lo, uintptr_t hi);         /* unmapped or replaced */
void vma_forget_all(void);
void vma_reset(void);                                /* fork child */

/* ---- tracking operations (zio_track.c), zio_lock held ---- */
size_t track_fill(size_t i, uintptr_t lo, uintptr_t hi);   /* materialise + cut */
size_t track_release_originals(uintptr_t lo, uintptr_t hi);   /* bytes pushed */
size_t track_materialize(uintptr_t lo, uintptr_t hi);         /* bytes pushed */
void track_fill_range(uintptr_t lo, uintptr_t hi);
size_t track_drop_overwritten(uintptr_t lo, uintptr_t hi);   /* pages forgotten */
int track_has_dependents(uintptr_t lo, uintptr_t hi);
void track_evict(size_t i);
int track_add_original(uintptr_t lo, uintptr_t hi, unsigned flags, uintptr_t key);
/* linked parts an output substituted, to compare before the call (zio_link.c) */
#define LINK_CHK_MAX 32
struct link_chk {
    int n;
    struct { uintptr_t dst, src; size_t len; } c[LINK_CHK_MAX];
};
/* chk NULL: intermediates only (zio_resolve); else linked bytes too */
int track_resolve(uintptr_t a, size_t n, struct iovec *out, int max, struct link_chk *chk);

void track_fault(uintptr_t addr, int wp);
void track_drop_all(void);

/* ---- links to stack originals (zio_link.c), zio_lock held but the hint ---- */
int link_overlaps(uintptr_t lo, uintptr_t hi);   /* lock-free hint */
void link_cut(uintptr_t lo, uintptr_t hi);
void link_drop_src(uintptr_t lo, uintptr_t hi);
int link_has_src(uintptr_t lo, uintptr_t hi);
void link_drop_all(void);
void link_gc(uint64_t now);
int link_src_nvm(uintptr_t s, size_t n);
size_t link_record(uintptr_t d, uintptr_t s, size_t n);
size_t link_move(uintptr_t d, uintptr_t s, size_t n);
int link_emit(uintptr_t lo, uintptr_t hi, uintptr_t end, struct iovec *out, int k, int max,
              struct link_chk *chk);
int link_verify(const struct link_chk *chk);   /* lock not held */

/* ---- large copies (zio_copy.c) ---- */
void *zio_copy(void *dst, const void *src, size_t n);

/* ---- copy elision (zio_elide.c) ---- */
/* one candidate intermediate: destination pages [lo,hi) hold the original
 * bytes from src on */
#define MAX_PIECES 8
struct piece {
    uintptr_t lo, hi, src, key;
};
/* zio_lock held: the pieces of a copy (sorted), and turning one into an
 * intermediate (0 ok; else p->hi = 0).  frees: see gc_run(). */
int copy_collect(uintptr_t d, uintptr_t s, size_t n, struct piece *pc);
int copy_elide_piece(struct piece *p, void **frees, size_t *nf);

/* ---- overlapping moves (zio_move.c) ---- */
/* 1: the move is done (re-pointed where possible); 0: move plainly */
int zio_move_repoint(uintptr_t d, uintptr_t s, size_t n);

/* ---- policy (zio_policy.c), zio_lock held ---- */
int policy_allows(uintptr_t key);
void policy_elided(uintptr_t key, size_t bytes);
void policy_faulted(uintptr_t key, size_t bytes);
int policy_input(uintptr_t key);   /* 1: record this input */

/* ---- GC and deferred frees (zio_gc.c) ---- */
#define GC_FREE_BATCH 16
/* zio_lock held; returns allocations now safe to free: pass them to
 * gc_free_later() after dropping the lock (never call the allocator under
 * zio_lock: the allocator itself calls memcpy) */
size_t gc_run(int periodic, void **frees, size_t max);
void gc_free_later(void **frees, size_t n);
int gc_defer_free(void *p, uintptr_t lo, uintptr_t hi);   /* zio_lock held */
void zio_free_tracked(void *p);

/* ---- pins of in-flight outputs (zio_pins.c) ---- */
void pins_wait(uintptr_t lo, uintptr_t hi);   /* zio_lock held: none reads [lo,hi) */
int pins_take(uintptr_t lo, uintptr_t hi);    /* zio_lock held: a slot, or -1 (all busy) */
void pins_release(int slot);

/* ---- IO helpers (zio_io.c) ---- */
#include <sys/types.h>
/* keep_idle: the input is placed by a stack through zio_copy_continued,
 * which prepares the pages it writes itself (see io_stack_placed) */
void io_before_input(void *buf, size_t len, int keep_idle);
void io_after_input(void *buf, ssize_t got, uintptr_t key);
void io_before_inputv(const struct iovec *iov, int cnt, int keep_idle);
/* did the last input on fd come through a stack (zio_copy_continued)? */
int io_stack_placed(int fd);
void io_note_placed(int fd, int by_stack);
void io_after_inputv(const struct iovec *iov, int cnt, ssize_t got, uintptr_t key);
#define IO_MAXP 128
enum { OUT_WRITE, OUT_PWRITE, OUT_SEND };
/* a call and the gather call output resolution rewrites it into */
enum zio_path {
    PATH_WRITE_WRITEV, PATH_WRITE_SENDMSG, PATH_WRITEV_SENDMSG, PATH_PWRITE_PWRITEV,
    PATH_PWRITE64_PWRITEV, PATH_SEND_SENDMSG, PATH_SENDTO_SENDMSG,
    PATH_NPAIRS,
    PATH_SAME = PATH_NPAIRS,   /* writev -> writev, sendmsg -> sendmsg */
};
int path_ok(enum zio_path p);   /* zio_path.c; lock not held */
struct msghdr;
struct zio_out {
    int kind, fd, flags;          /* flags: send flags */
    off_t off;                    /* OUT_PWRITE */
    const struct msghdr *msg;     /* OUT_SEND: name/control to keep, or NULL */
    enum zio_path file_path;      /* the rewrite to a gather call for a file, */
    enum zio_path sock_path;      /* ... and for a socket */
};
int io_output_tracked(const struct iovec *in, int cnt);
/* 1: done, *res holds the call's result; 0: nothing was substituted (the
 * buffers are ordinary memory now), the caller makes its own call */
int io_output(const struct zio_out *how, const struct iovec *in, int cnt, ssize_t *res);

/* ---- profile mode (zio_profile.c) ---- */
void profile_count(size_t n);
void profile_report(void);

/* ---- counters (zio_stats.c) ---- */
enum zio_ctr {
    C_COPIES_SEEN, C_COPIES_ELIDED, C_BYTES_ELIDED, C_FRINGE_BYTES,
    C_COPIES_PLAIN, C_FAULTS_MISSING, C_FAULTS_WP, C_FAULTS_ZERO,
    C_PAGES_FILLED, C_SPLITS, C_POLICY_FALLBACKS, C_POLICY_DISABLED,
    C_GC_RUNS, C_GC_EVICTIONS, C_GC_FREES, C_ENTRIES_LIVE, C_ORIGINALS,
    C_INPUTS_RECORDED, C_OUTPUTS_RESOLVED, C_OUTPUT_PIECES, C_FREES_INTER,
    C_FREES_DEFERRED, C_API_REGISTER, C_API_RESOLVE, C_API_RELEASE,
    C_FORK_RESOLVES, C_UFFD_ERRORS, C_NOT_ANON,
    C_MOVES_REPOINTED, C_BYTES_PLAIN_LARGE, C_RELEASE_FILL_BYTES, C_API_TRY_RELEASE,
    C_API_RELEASE_BUSY, C_OUTPUTS_MATERIALIZED, C_BYTES_ADOPTED, C_FILLS_SPLIT,
    /* system calls libzio issues itself (how much an elision costs) */
    C_SYS_REGISTER, C_SYS_UNREGISTER, C_SYS_PROTECT, C_SYS_FILL, C_SYS_MINCORE,
    C_SYS_MADVISE, C_VMA_HITS, C_VMA_MAPS_READS, C_IDLE_ZEROED,
    C_COPIES_LINKED, C_BYTES_LINKED, C_LINK_OUT_BYTES, C_LINK_MISMATCH, C_LINKS_LIVE,
    C_REALLOCS_IN_PLACE, C_REALLOCS_MOVED,
    C_NCTR
};
extern uint64_t *zio_ctr[C_NCTR];
void stats_open(void);
void stats_close(void);
static inline void ctr_add(enum zio_ctr c, uint64_t n)
{
    __atomic_fetch_add(zio_ctr[c], n, __ATOMIC_RELAXED);
}
static inline void ctr_set(enum zio_ctr c, uint64_t v)
{
    __atomic_store_n(zio_ctr[c], v, __ATOMIC_RELAXED);
}

#endif
