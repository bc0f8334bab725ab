/*
 * The fault-handler thread: it reads the userfaultfd (zio_uffd.c), hands
 * each fault to tracking (track_fault) and runs the periodic (1 s) garbage
 * collection.  Above tracking and GC, so the userfaultfd primitives below
 * them never call back up.
 */
#include "zio_internal.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

static void *handler_main(void *arg)
{
    (void)arg;
    zio_in_lib = 1;   /* this thread's own memcpy calls never elide */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uint64_t next_gc = zio_now_ns() + 1000000000ULL;
    struct uffd_msg msgs[16];
    for (;;) {
        uint64_t now = zio_now_ns();
        int timeout = now >= next_gc ? 0 : (int)((next_gc - now) / 1000000ULL) + 1;
        struct pollfd p = { .fd = zio_uffd, .events = POLLIN };
        int r = poll(&p, 1, timeout);
        if (r > 0) {
            ssize_t got = read(zio_uffd, msgs, sizeof(msgs));
            for (ssize_t k = 0; got > 0 && k < got / (ssize_t)sizeof(msgs[0]); k++) {
                if (msgs[k].event != UFFD_EVENT_PAGEFAULT)
                    continue;
                uintptr_t a = pg_floor(msgs[k].arg.pagefault.address);
                int wp = !!(msgs[k].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
                pthread_mutex_lock(&zio_lock);
                track_fault(a, wp);
                pthread_mutex_unlock(&zio_lock);
            }
        }
        if (zio_now_ns() >= next_gc) {
            void *frees[GC_FREE_BATCH];
            pthread_mutex_lock(&zio_lock);
            size_t nf = gc_run(1, frees, GC_FREE_BATCH);
            pthread_mutex_unlock(&zio_lock);
            gc_free_later(frees, nf);
            next_gc = zio_now_ns() + 1000000000ULL;
        }
    }
    return NULL;
}

static void start_once(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, handler_main, NULL) != 0) {
        zio_log("cannot start the fault handler thread; plain copies");
        zio_mode = ZIO_OFF;
    }
    pthread_attr_destroy(&a);
    /* settle now which output rewrites are safe: the first output of tracked
     * data should not pay for the loader walk */
    for (int p = 0; p < PATH_NPAIRS; p++)
        path_ok((enum zio_path)p);
}

/* The handler thread starts with the first recorded input, not at load:
 * most processes a preloaded shell spawns never do IO worth tracking, and a
 * helper thread changes how a process behaves (e.g. glibc's setuid
 * broadcast in setpriv/su-like tools).  Call without zio_lock held. */
void fault_handler_start(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (zio_mode == ZIO_ELIDE)
        pthread_once(&once, start_once);
}
