/* TAS socket table, the shim's lock and the lazy attach to the daemon: the
 * bottom of the shim (it calls only the core). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interpose.h"
#include "kb/env.h"

struct tas_app *lt_app;
struct lt_sock *lt_fds[LT_MAX_FD];
struct lt_sock *lt_listeners;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int attach_state;       /* 0 not tried, 1 attached, -1 unreachable, -2 refused */
static uint64_t next_gen;

void lt_lock(void)
{
    pthread_mutex_lock(&lock);
}

void lt_unlock(void)
{
    pthread_mutex_unlock(&lock);
}

/* The core's counters as kbstats.libtas.<pid>, removed at exit by the
 * process that made it (a forked child makes its own on attach). */
static char stats_instance[16];
static pid_t stats_pid;

static void unlink_stats(void)
{
    if (stats_pid == getpid())
        tas_app_stats_unlink(stats_instance);
}

/* Before fork nothing may depend on our receive rings (the child has no
 * userfaultfd context and no TAS attachment).  Registered at attach, after
 * libzio and libstrata registered theirs, so it runs before their prepare
 * handlers take their locks, and before fork_child.c's takes ours. */
static void release_before_fork(void)
{
    lt_lock();
    if (lt_app != NULL)
        tas_app_rx_release_all(lt_app);
    lt_unlock();
}

static void publish(void)
{
    static int hooks;
    snprintf(stats_instance, sizeof(stats_instance), "%d", (int)getpid());
    if (tas_app_stats_publish(lt_app, stats_instance) == 0)
        stats_pid = getpid();
    if (!hooks) {
        atexit(unlink_stats);
        pthread_atfork(release_before_fork, NULL, NULL);
        hooks = 1;
    }
}

/* The instance and run directory as the program started: a prefork server
 * may replace its environment before its workers attach (nginx does). */
int lt_attach(void)
{
    if (attach_state != 0)
        return attach_state > 0;
    const char *inst = kb_getenv("TAS_INSTANCE");   /* as started: nginx's workers */
    const char *dir = kb_getenv("TAS_RUN_DIR");      /* clear their environment */
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/%s.sock", dir && *dir ? dir : "/run/tas",
             inst && *inst ? inst : "tas0");
    lt_app = tas_app_attach(path, err, sizeof(err));
    /* kbrun --orp: received bytes must land in this process's Strata pool;
     * kernel sockets, or TAS rings elsewhere, would quietly not be ORP */
    const char *orp = kb_getenv("TAS_REQUIRE_NVM");
    int need_nvm = orp != NULL && *orp && strcmp(orp, "0") != 0;
    if (lt_app == NULL) {
        fprintf(stderr, "libtas: TAS daemon not reachable (%s); %s\n", err,
                need_nvm ? "refusing TCP sockets (TAS_REQUIRE_NVM, kbrun --orp)"
                         : "using kernel sockets");
        attach_state = need_nvm ? -2 : -1;
        return 0;
    }
    if (need_nvm && !tas_app_nvm_mapped(lt_app)) {
        fprintf(stderr, "libtas: the daemon's receive buffers are not in this process's Strata "
                "pool (STRATA_POOL=%s); refusing TCP sockets (TAS_REQUIRE_NVM, kbrun --orp): "
                "start the daemon with buffers.backing = \"nvm\" and nvm.pool_path on this "
                "pool\n", kb_getenv("STRATA_POOL") ? kb_getenv("STRATA_POOL") : "(unset)");
        tas_app_detach(lt_app);
        lt_app = NULL;
        attach_state = -2;
        return 0;
    }
    attach_state = 1;
    publish();
    /* after publish: the count lands on the stats page */
    tas_app_pin_thread(lt_app);
    return 1;
}

int lt_attach_refused(void)
{
    return attach_state == -2;
}

void lt_fd_map(int fd, struct lt_sock *s)
{
    __atomic_store_n(&lt_fds[fd], s, __ATOMIC_RELEASE);
}

/* The generation of the TAS socket that fd last named before it became a
 * kernel socket under the same number (sock_to_kernel.c), 0 if none: epoll
 * moves that socket's entries to the kernel's set (epoll_calls.c). */
static uint64_t moved_gen[LT_MAX_FD];

void lt_fd_moved(int fd, uint64_t gen)
{
    if (fd >= 0 && fd < LT_MAX_FD)
        __atomic_store_n(&moved_gen[fd], gen, __ATOMIC_RELEASE);
}

uint64_t lt_fd_moved_gen(int fd)
{
    return fd >= 0 && fd < LT_MAX_FD ? __atomic_load_n(&moved_gen[fd], __ATOMIC_ACQUIRE) : 0;
}

static void fork_marker_note(int fd, uint32_t flow, int family);

int lt_dup_result(struct lt_sock *s, int nfd)
{
    if (nfd < 0)
        return nfd;
    if (nfd >= LT_MAX_FD) {
        REAL(close)(nfd);
        errno = EMFILE;
        return -1;
    }
    s->refs++;
    lt_fd_map(nfd, s);
    if (s->claim_flow != 0)
        fork_marker_note(nfd, s->claim_flow - 1, s->family);
    return nfd;
}

int lt_fd_install(struct lt_sock *s, int cloexec)
{
    /* The placeholder only reserves the number: an O_PATH descriptor, so a
     * read or write that reaches the kernel without passing the shim
     * (stdio's buffered I/O on fdopen'd sockets, a program exec'd by a
     * vfork child) fails at once with EBADF instead of blocking (an
     * eventfd's read waits forever) or half-working. */
    return lt_dup_result(s, open("/dev/null", O_PATH | (cloexec ? O_CLOEXEC : 0)));
}

struct lt_sock *lt_sock_new(void)
{
    struct lt_sock *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->gen = ++next_gen;
    s->kernel_fd = -1;
    return s;
}

struct lt_sock *lt_sock_hold(int fd)
{
    if (lt_sock_of(fd) == NULL)       /* kernel descriptors: no lock */
        return NULL;
    lt_lock();
    struct lt_sock *s = lt_sock_of(fd);   /* again: a close may have won */
    if (s != NULL)
        s->refs++;
    lt_unlock();
    return s;
}

void lt_attach_forget(void)
{
    /* Munmap and close only: the daemon hears nothing, the parent keeps it. */
    tas_app_detach(lt_app);
    lt_app = NULL;
    attach_state = 0;
    lt_listeners = NULL;
}

/* The fork marker (fork_child.c): a memfd a forked child keeps open while
 * it holds inherited connections it has not taken over (the daemon looks
 * for it before sending their FIN, tas/slowpath/fork_conns.py). */
static int fork_marker = -1;
static int claims_pending;

void lt_fork_marker_keep(int fd, int pending)
{
    if (fork_marker >= 0 && fork_marker != fd)
        REAL(close)(fork_marker);
    fork_marker = fd;
    claims_pending = pending;
}

/* A new descriptor of an inherited connection (dup2 onto stdin, say, before
 * an exec: inetd-style servers): the marker lists it too, and survives an
 * exec if the descriptor does. */
static void fork_marker_note(int fd, uint32_t flow, int family)
{
    if (fork_marker < 0)
        return;
    char line[48];
    int n = snprintf(line, sizeof(line), "%d %u %d\n", fd, flow, family);
    if (REAL(write)(fork_marker, line, (size_t)n) != n)
        return;
    int f = REAL(fcntl)(fd, F_GETFD);
    if (f >= 0 && !(f & FD_CLOEXEC))
        REAL(fcntl)(fork_marker, F_SETFD, 0);
}

int lt_fork_marker_fd(void)
{
    return fork_marker;
}

void lt_claim_pending_done(void)
{
    if (claims_pending > 0 && --claims_pending == 0 && fork_marker >= 0) {
        REAL(close)(fork_marker);
        fork_marker = -1;
    }
}
