/*
 * A TAS socket that turns out to need the kernel's stack becomes a kernel
 * socket under the same descriptor number, before it is connected or
 * listening: IPv6 proper (sock_inet6.c), and a connect to an address TAS does
 * not reach.  TAS carries the daemon's subnet only (it has no router and no
 * loopback), so a program under tas-run that connected to 127.0.0.1 or to
 * another network waited for a handshake TAS could never make, where the
 * same program without the shim connected.  The options set so far and the
 * address bound are replayed on the kernel socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "interpose.h"

int lt_record_option(struct lt_sock *s, int level, int name, const void *val, socklen_t len)
{
    if (s->kind == LT_NEW && val != NULL) {
        struct lt_opt *o = NULL;
        for (int i = 0; i < s->nopts && o == NULL; i++)
            if (s->opts[i].level == level && s->opts[i].name == name)
                o = &s->opts[i];
        if (o == NULL && s->nopts < LT_MAX_OPTS && len <= sizeof(o->val))
            o = &s->opts[s->nopts++];
        if (o != NULL && len <= sizeof(o->val)) {
            *o = (struct lt_opt){.level = level, .name = name, .len = len};
            memcpy(o->val, val, len);
        } else {
            s->opts_lost = 1;
        }
    }
    int on = val != NULL && len >= sizeof(int) && *(const int *)val != 0;
    if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
        s->v6only = on;
    else if (level == SOL_SOCKET && name == SO_REUSEADDR)
        s->reuseaddr = on;
    else if (level == SOL_SOCKET && name == SO_REUSEPORT)
        s->reuseport = on;
    else
        return 0;
    return 1;
}

void lt_record_bind(struct lt_sock *s, const struct sockaddr *addr, socklen_t len)
{
    if (len <= sizeof(s->bound)) {
        memcpy(&s->bound, addr, len);
        s->bound_len = len;
    }
}

int lt_kernel_socket(struct lt_sock *s, int type_flags)
{
    int k = REAL(socket)(s->family, SOCK_STREAM | type_flags, 0);
    if (k < 0)
        return -errno;
    for (int i = 0; i < s->nopts; i++)
        REAL(setsockopt)(k, s->opts[i].level, s->opts[i].name, s->opts[i].val, s->opts[i].len);
    if (s->bound_len > 0 && REAL(bind)(k, (struct sockaddr *)&s->bound, s->bound_len) != 0) {
        int e = errno;
        REAL(close)(k);
        return -e;
    }
    return k;
}

int lt_to_kernel(int fd, struct lt_sock *s, const char *why)
{
    if (s->kind != LT_NEW || s->refs > 1) {
        fprintf(stderr, "libtas: socket %d needs the kernel's stack (%s), and it can no "
                        "longer move there (already in use or duplicated)\n", fd, why);
        return s->family == AF_INET6 ? -EAFNOSUPPORT : -ENETUNREACH;
    }
    if (s->opts_lost)
        fprintf(stderr, "libtas: socket %d moves to the kernel's stack (%s) without some of "
                        "its options (more than %d, or too long)\n", fd, why, LT_MAX_OPTS);
    int fdflags = REAL(fcntl)(fd, F_GETFD);
    int k = lt_kernel_socket(s, s->nonblock ? SOCK_NONBLOCK : 0);
    if (k < 0)
        return k;
    lt_lock();
    lt_fd_map(fd, NULL);
    lt_fd_moved(fd, s->gen);
    int r = REAL(dup3)(k, fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
    lt_sock_unref(s);
    if (lt_app != NULL)
        tas_app_count(lt_app, TAS_SHIM_TO_KERNEL, 1);
    lt_unlock();
    REAL(close)(k);
    return r < 0 ? -errno : 0;
}
