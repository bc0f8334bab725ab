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
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interpose.h"

static void inert_descriptors(void)
{
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
            if (s->kind == LT_CONN)        /* (once per socket: dup'd fds share it) */
                s->claim_flow = s->flow->id + 1;
            s->kind = LT_NEW;
            s->flow = NULL;
            for (int i = 0; i < LT_FORK_PIDS; i++)
                s->fork_pids[i] = 0;
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
    pid_t pid = REAL(fork)();
    if (pid > 0 && lt_app != NULL)
        remember_child(pid);
    return pid;
}

__attribute__((constructor)) static void fork_child_ctor(void)
{
    pthread_atfork(prepare, parent, child);
}
