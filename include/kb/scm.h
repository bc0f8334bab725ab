/*
 * The descriptors an SCM_RIGHTS message carries, for the preload libraries
 * whose descriptors are placeholders the kernel would pass as they are
 * (libstrata shares or adopts them, libtas refuses to send its sockets).
 */
#ifndef KB_SCM_H
#define KB_SCM_H

#include <sys/socket.h>

/* fn(fd, arg) for every descriptor of every SCM_RIGHTS message of m, in
 * order, until one returns nonzero; returns that, or 0. */
int kb_scm_each_fd(const struct msghdr *m, int (*fn)(int fd, void *arg), void *arg);

#endif
