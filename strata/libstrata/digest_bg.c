/*
 * Background digest: a thread inside libstrata, started on the first time a
 * process's log passes the digest threshold, so the writer does not stall
 * there while the log still has room.
 *
 * The thread applies the own log up to its current tail without resetting
 * it (digest_own_prefix, under the pool lock but not G.mu: the writer keeps
 * appending past the tail meanwhile), then takes G.mu only to apply the few
 * entries written during that pass and reset the log.  Crash safety is the
 * digest's: entries stay in the log until the reset, and replaying an
 * applied entry again is idempotent, so a crash at any point is recovered by
 * replaying the whole log as before.  A writer whose log fills before the
 * thread caught up digests itself (synchronously, as without the thread),
 * starting where the thread stopped.
 *
 * The flock of the pool is per open file description, so it does not keep
 * two threads of one process apart: pool_thread_lock does (strata_pool_lock
 * takes it first, and readers of the shared area of this process take it
 * around the reads a concurrent apply could change).
 *
 * fork: the prepare handler waits for a pass to end (pool_thread_lock) and
 * the child starts without the thread (it starts its own on its first
 * threshold).  exec: the process digested its log before (strata_before_
 * spawn), so the thread has nothing left to do when it vanishes.
 * STRATA_DIGEST_THREAD=0 turns the thread off (the writer digests itself).
 */
#include "strata_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kb/env.h"

static pthread_mutex_t bg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bg_cv = PTHREAD_COND_INITIALIZER;
static pthread_t bg_thread;
static pid_t bg_pid;          /* process that runs the thread (0: none) */
static int bg_want, bg_busy, bg_quit; /* under bg_mu */
static int bg_reset_wanted;   /* references hold receive buffers: reset the log after the pass */
static uint64_t bg_done;      /* own log offset applied by the thread; under pool_thread_lock */
static int enabled = -1;

int bg_enabled(void)
{
    if (enabled < 0) {
        const char *e = kb_getenv("STRATA_DIGEST_THREAD");
        enabled = !(e && strcmp(e, "0") == 0);
    }
    return enabled;
}

uint64_t bg_applied(void) { return bg_done; }
void bg_set_applied(uint64_t off) { __atomic_store_n(&bg_done, off, __ATOMIC_RELAXED); }
void bg_log_reset(void) { __atomic_store_n(&bg_done, 0, __ATOMIC_RELAXED); }

static int over_threshold(void)
{
    return G.slot >= 0 && G.tail * 100 > G.sb->log_bytes * G.sb->digest_pct;
}

/* The writer kicks the thread once a 32nd of its log is unapplied, so the
 * thread applies while the log fills; the reset waits for the threshold. */
int bg_wanted(void)
{
    uint64_t done = __atomic_load_n(&bg_done, __ATOMIC_RELAXED);
    return G.tail - (done < G.tail ? done : G.tail) >= G.sb->log_bytes / 32 || over_threshold();
}

static void *bg_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&bg_mu);
    for (;;) {
        while (!bg_want && !bg_quit)
            pthread_cond_wait(&bg_cv, &bg_mu);
        if (bg_quit)
            break;
        bg_want = 0;
        bg_busy = 1;
        pthread_mutex_unlock(&bg_mu);
        /* apply without G.mu until a pass finds (almost) nothing new */
        for (int pass = 0; pass < 8; pass++) {
            if (G.base == NULL || strata_pool_lock() != 0)
                break;
            int64_t n = digest_own_prefix();
            strata_pool_unlock();
            if (n <= 16)
                break;
        }
        /* then the rest and the reset, holding the writers off briefly */
        pthread_mutex_lock(&G.mu);
        int refs_wait = __atomic_exchange_n(&bg_reset_wanted, 0, __ATOMIC_RELAXED);
        if (G.base != NULL && (over_threshold() || refs_wait) && digest_own() == 0 && refs_wait)
            kb_stats_add(G.c.ref_digests, 1);
        pthread_mutex_unlock(&G.mu);
        pthread_mutex_lock(&bg_mu);
        bg_busy = 0;
    }
    pthread_mutex_unlock(&bg_mu);
    return NULL;
}

/* Called by a writer holding G.mu, after an append passed the threshold. */
void bg_kick(void)
{
    pid_t me = G.pid;
    /* already woken or working: no mutex on this write (a kick missed as
     * the thread goes idle is made by the next write, or the full log) */
    if (__atomic_load_n(&bg_pid, __ATOMIC_RELAXED) == me &&
        (__atomic_load_n(&bg_busy, __ATOMIC_RELAXED) || __atomic_load_n(&bg_want, __ATOMIC_RELAXED)))
        return;
    pthread_mutex_lock(&bg_mu);
    if (bg_pid != me && !bg_quit) {
        /* the thread takes no signals: they belong to the program's threads */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&bg_thread, NULL, bg_main, NULL) == 0) {
            bg_pid = me;
            kb_stats_add(G.c.bg_threads, 1);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    int started = bg_pid == me;
    if (started && !bg_want && !bg_busy) {
        bg_want = 1;
        kb_stats_add(G.c.bg_kicks, 1);
        pthread_cond_signal(&bg_cv);
    }
    pthread_mutex_unlock(&bg_mu);
    if (!started)
        digest_own(); /* no thread: as without one */
}

/* Called holding G.mu: undigested references hold back a receive stack's
 * buffers (ORP).  The thread applies the log and resets it, which lets them
 * go (refs_clear), while the writer goes on; without the thread the writer
 * digests now, as before. */
void bg_kick_refs(void)
{
    if (!bg_enabled()) {
        if (digest_own() == 0)
            kb_stats_add(G.c.ref_digests, 1);
        return;
    }
    __atomic_store_n(&bg_reset_wanted, 1, __ATOMIC_RELAXED);
    bg_kick();
}

void bg_stop(void)
{
    pthread_mutex_lock(&bg_mu);
    int join = bg_pid != 0 && bg_pid == (pid_t)syscall(SYS_getpid) && !pthread_equal(pthread_self(), bg_thread);
    bg_quit = 1;
    pthread_cond_signal(&bg_cv);
    pthread_mutex_unlock(&bg_mu);
    if (join)
        pthread_join(bg_thread, NULL);
    pthread_mutex_lock(&bg_mu);
    bg_pid = 0;
    bg_quit = 0;
    pthread_mutex_unlock(&bg_mu);
}

/* fork: no pass in flight (pool_thread_lock), no kick half-done (bg_mu); G.mu is
 * already held by libfs's prepare handler. */
void bg_atfork_prepare(void)
{
    pool_thread_lock();
    pthread_mutex_lock(&bg_mu);
}

void bg_atfork_parent(void)
{
    pthread_mutex_unlock(&bg_mu);
    pool_thread_unlock();
}

void bg_atfork_child(void)
{
    /* the child's thread has a new tid: start the mutexes afresh */
    pool_thread_lock_reset();
    pthread_mutex_init(&bg_mu, NULL);
    pthread_cond_init(&bg_cv, NULL);
    bg_pid = 0;
    bg_want = bg_busy = bg_quit = 0;
    bg_done = 0;
}
