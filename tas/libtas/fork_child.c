/*
 * fork without exec.  The parent's attachment is not the child's to use: its
 * context queues are single-producer/single-consumer and its control socket
 * is shared, so a child that closed an inherited listener (as Redis does
 * before BGSAVE) would have closed the parent's, and replies would go to
 * whichever process read first.  So in the child:
 *  - an inherited listener stays a TAS listener: on first use (accept,
 *    poll/epoll) the child joins the port's listeners in the daemon, which
 *    spreads new connections over the processes accepting there (prefork
 *    servers: nginx workers); closing it unused affects nobody;
 *  - an inherited connection stays a TAS socket, unconnected until its
 *    first use, which takes it over from the parent (sock_claim.c: a server
 *    that accepts, then forks a process per connection); closing it unused
 *    affects nobody;
 *  - every other inherited TAS descriptor becomes an unconnected kernel
 *    socket: closing it affects nobody, using it fails clearly (ENOTCONN);
 *  - the parent's attachment is dropped without a word to the daemon (the
 *    parent still holds the same registration socket);
 *  - the next socket the child makes attaches afresh, as its own app.
 * In the parent, each open connection remembers the children forked while
 * it was open: its close then leaves the FIN to the daemon, which sends it
 * once those children are gone, unless one takes the connection over (as
 * Linux sends it at the last close of the socket).
 * The shim lock is held across fork, so the child sees consistent tables.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interpose.h"

/* The marker: made by fork() before the child exists, so the child holds it
 * from its first instant (the daemon finds it in /proc/PID/fd).  The child
 * writes into it which of its descriptors are inherited connections ("fd
 * flow family" lines), for a program it execs (fork_adopt.c), and keeps it as
 * long as it holds any of them; close-on-exec unless one of them is not. */
static __thread int new_marker = -1;   /* per thread: two threads may fork at once */
static uint32_t fork_stamp;

static int cloexec_of(int fd)
{
    int f = REAL(fcntl)(fd, F_GETFD);
    return f >= 0 && (f & FD_CLOEXEC);
}

/* One inherited connection: unconnected until its first use takes it over
 * (sock_claim.c); a line of the marker for each of its descriptors. */
static void inherit_conn(int fd, struct lt_sock *s, FILE *m, int *keep_on_exec, int *pending)
{
    if (s->kind == LT_CONN)
        s->claim_flow = s->flow->id + 1;
    s->kind = LT_NEW;
    s->flow = NULL;
    for (int i = 0; i < LT_FORK_PIDS; i++)
        s->fork_pids[i] = 0;
    if (s->fork_seen != fork_stamp) {      /* (dup'd fds share the socket) */
        s->fork_seen = fork_stamp;
        (*pending)++;
    }
    if (m != NULL)
        fprintf(m, "%d %u %d\n", fd, s->claim_flow - 1, s->family);
    *keep_on_exec |= !cloexec_of(fd);
}

static void inert_descriptors(void)
{
    fork_stamp++;
    int pending = 0, keep_on_exec = 0;
    FILE *m = new_marker >= 0 ? fdopen(REAL(dup)(new_marker), "w") : NULL;
    for (int fd = 0; fd < LT_MAX_FD; fd++) {
        struct lt_sock *s = lt_sock_of(fd);
        if (s == NULL)
            continue;
        if (s->kind == LT_LISTEN) {
            s->rejoin = 1;
            lt_handoff_forget(s);
            s->next_listener = NULL;
            continue;
        }
        if (s->claim_flow != 0 || (s->kind == LT_CONN && !s->flow->reset && !s->flow->moved)) {
            inherit_conn(fd, s, m, &keep_on_exec, &pending);
            continue;
        }
        lt_fd_map(fd, NULL);
        int k = REAL(socket)(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (k >= 0 && k != fd) {
            /* dup2 keeps the number; the close-on-exec flag of the original
             * placeholder is not preserved (the socket is inert anyway). */
            REAL(dup2)(k, fd);
            REAL(close)(k);
        }
    }
    if (m != NULL)
        fclose(m);
    if (new_marker >= 0 && keep_on_exec)
        REAL(fcntl)(new_marker, F_SETFD, 0);
    if (pending > 0)
        lt_fork_marker_keep(new_marker, pending);
    else if (new_marker >= 0)
        REAL(close)(new_marker);
    new_marker = -1;
}

static void prepare(void)
{
    lt_lock();
}

static void parent(void)
{
    lt_unlock();
}

static void child(void)
{
    inert_descriptors();
    lt_attach_forget();
    lt_flows_forget_all();
    lt_wait_forget();
    lt_unlock();
}

/* The parent's side: the connections open now may be held by this child. */
static void remember_child(pid_t pid)
{
    lt_lock();
    for (int fd = 0; fd < LT_MAX_FD; fd++) {
        struct lt_sock *s = lt_sock_of(fd);
        if (s == NULL || s->kind != LT_CONN || s->fork_pids[0] == pid)
            continue;          /* (dup'd fds share the socket) */
        for (int i = LT_FORK_PIDS - 1; i > 0; i--)
            s->fork_pids[i] = s->fork_pids[i - 1];
        s->fork_pids[0] = pid;
    }
    lt_unlock();
}

pid_t fork(void)
{
    int marker = lt_app != NULL ? memfd_create(LT_FORK_MARKER, MFD_CLOEXEC) : -1;
    new_marker = marker;       /* the child's handler takes it over */
    pid_t pid = REAL(fork)();
    if (pid != 0) {
        new_marker = -1;
        if (marker >= 0)
            REAL(close)(marker);
        if (pid > 0 && lt_app != NULL)
            remember_child(pid);
    }
    return pid;
}

/* vfork is fork here (POSIX allows it: a vfork child may only exec or
 * _exit).  A child that shares our memory could not run the handlers that
 * make its inherited TAS connections its own, and a wrapper cannot call
 * libc's vfork (the child would return through our frame, which the parent
 * returns through after).  So Python's subprocess (it uses vfork), started
 * with a TAS connection as its stdin or stdout, gets a fork marker and the
 * program it execs takes the connection over (fork_adopt.c). */
pid_t vfork(void)
{
    return fork();
}

__attribute__((constructor)) static void fork_child_ctor(void)
{
    pthread_atfork(prepare, parent, child);
}
