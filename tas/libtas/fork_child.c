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
 *  - every other inherited TAS descriptor becomes an unconnected kernel
 *    socket: closing it affects nobody, using it fails clearly (ENOTCONN);
 *  - the parent's attachment is dropped without a word to the daemon (the
 *    parent still holds the same registration socket);
 *  - the next socket the child makes attaches afresh, as its own app.
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

__attribute__((constructor)) static void fork_child_ctor(void)
{
    pthread_atfork(prepare, parent, child);
}
