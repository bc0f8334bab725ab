/*
 * The kernel twin of a TAS listener.  A program listening on 0.0.0.0 (or ::)
 * without the shim is reached on every address of the host: its own clients
 * on 127.0.0.1 (redis-cli, curl localhost, health checks) and other
 * networks.  TAS carries its own subnet only, so such a listener also gets a
 * kernel listening socket on the same address and port (the TAS address is
 * not the kernel's: the two never meet).  accept() takes TAS connections
 * first, then the twin's; poll/select merge the twin's readiness into the
 * listener's, and epoll registers the twin under the listener's data
 * (epoll_calls.c).  A connection from the twin is a plain kernel socket.
 * If the port is taken on the kernel's stack the listener takes TAS
 * connections only, and says so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interpose.h"

void lt_listen_kernel_open(struct lt_sock *s)
{
    if (s->local_ip != 0 || s->bound_len == 0 || s->kernel_fd >= 0)
        return;         /* a TAS address, or no port chosen: nothing to mirror */
    int k = lt_kernel_socket(s, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (k >= 0 && REAL(listen)(k, (int)s->backlog) != 0) {
        int e = errno;
        REAL(close)(k);
        k = -e;
    }
    if (k < 0) {
        fprintf(stderr, "libtas: port %u is not free on the kernel's stack (%s): this "
                        "listener takes connections through TAS only, not from this host "
                        "or other networks\n", s->local_port, strerror(-k));
        return;
    }
    s->kernel_fd = k;
    tas_app_count(lt_app, TAS_SHIM_KERNEL_TWINS, 1);
}

int lt_listen_kernel_accept(struct lt_sock *s, struct sockaddr *addr, socklen_t *len, int flags)
{
    int k = REAL(accept4)(s->kernel_fd, addr, len, flags);
    if (k >= 0)
        tas_app_count(lt_app, TAS_SHIM_KERNEL_ACCEPTS, 1);
    return k;
}
