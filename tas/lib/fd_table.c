/* TAS socket table, the shim's lock and the lazy attach to the daemon. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "interpose.h"

struct tas_app *lt_app;
struct lt_sock *lt_fds[LT_MAX_FD];
struct lt_sock *lt_listeners;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int attach_state;       /* 0 not tried, 1 attached, -1 unreachable */
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
static char env_inst[64], env_dir[160];

__attribute__((constructor)) static void remember_environment(void)
{
    const char *inst = getenv("TAS_INSTANCE"), *dir = getenv("TAS_RUN_DIR");
    snprintf(env_inst, sizeof(env_inst), "%s", inst ? inst : "");
    snprintf(env_dir, sizeof(env_dir), "%s", dir ? dir : "");
}

int lt_attach(void)
{
    if (attach_state != 0)
        return attach_state > 0;
    const char *inst = getenv("TAS_INSTANCE");
    const char *dir = getenv("TAS_RUN_DIR");
    if (inst == NULL)
        inst = env_inst;
    if (dir == NULL)
        dir = env_dir;
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/%s.sock", dir && *dir ? dir : "/run/tas",
             inst && *inst ? inst : "tas0");
    lt_app = tas_app_attach(path, err, sizeof(err));
    if (lt_app == NULL) {
        fprintf(stderr, "libtas: TAS daemon not reachable (%s); using kernel sockets\n", err);
        attach_state = -1;
        return 0;
    }
    attach_state = 1;
    publish();
    return 1;
}

void lt_fd_map(int fd, struct lt_sock *s)
{
    __atomic_store_n(&lt_fds[fd], s, __ATOMIC_RELEASE);
}

int lt_fd_install(struct lt_sock *s, int cloexec)
{
    /* The eventfd only reserves the number (never signalled). */
    return lt_dup_result(s, eventfd(0, cloexec ? EFD_CLOEXEC : 0));
}

struct lt_sock *lt_sock_new(void)
{
    struct lt_sock *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->gen = ++next_gen;
    return s;
}

static void unlink_listener(struct lt_sock *s)
{
    for (struct lt_sock **p = &lt_listeners; *p != NULL; p = &(*p)->next_listener) {
        if (*p == s) {
            *p = s->next_listener;
            return;
        }
    }
}

void lt_sock_unref(struct lt_sock *s)
{
    if (--s->refs > 0)
        return;
    struct tas_ctl_msg m = {0};
    if (s->kind == LT_LISTEN && s->rejoin) {
        /* inherited, never used here: the daemon knows nothing of it */
    } else if (s->kind == LT_LISTEN) {
        unlink_listener(s);
        lt_handoff_reset_all(s);
        m.type = TAS_CTL_LISTEN_CLOSE;
        m.listener_id = s->listener_id;
        lt_request(&m);
    } else if (s->kind == LT_CONNECTING) {
        lt_connect_orphan(s);
    } else if (s->kind == LT_CONN) {
        struct lt_flow *f = s->flow;
        tas_rx_close(lt_app, &f->rx);  /* nothing may depend on the ring after */
        if (!f->reset && !s->linger_rst) {
            /* A plain close goes with the FIN through the context queue: no
             * message, no wake-up of the daemon (its tick reads the flow). */
            tas_app_post(lt_app, f->id, 0, 0,
                         (s->shut_wr ? 0 : TAS_ATX_FL_TXFIN) | TAS_ATX_FL_CLOSED);
            f->quiet_closed = 1;
            lt_flow_forget(f);
            free(s);
            return;
        }
        m.type = TAS_CTL_CLOSE;
        /* SO_LINGER with a zero timeout: abort with a RST, unsent data is
         * dropped (Linux's behaviour, and what its users ask for).  One way:
         * the answer could only be 0, close does not wait for the daemon. */
        m.flags = (s->linger_rst ? TAS_CTL_FL_RESET : 0) | TAS_CTL_FL_NOREPLY;
        m.flow_id = f->id;
        tas_app_send(lt_app, &m);
        lt_flow_forget(f);
    }
    free(s);
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

ssize_t lt_sock_done(struct lt_sock *s, ssize_t r)
{
    int e = errno;
    lt_lock();
    lt_sock_unref(s);
    lt_unlock();
    errno = e;
    return r;
}

void lt_forget_state(void)
{
    /* Munmap and close only: the daemon hears nothing, the parent keeps it. */
    tas_app_detach(lt_app);
    lt_app = NULL;
    attach_state = 0;
    lt_listeners = NULL;
    lt_flows_forget_all();
}
