/*
 * LD_PRELOAD shim: Strata descriptors passed over a Unix socket
 * (SCM_RIGHTS).  A Strata fd is a kernel fd of an O_PATH placeholder, so the
 * kernel passes the placeholder, not the file.  The sender's sendmsg first
 * moves each Strata fd's open file description into shared memory (as
 * before exec: ofd.c), which makes the passed descriptor the OFD's memfd;
 * the receiver's recvmsg adopts every such descriptor it gets, sharing
 * offset, flags and lease with the sender.  A descriptor the receiver
 * cannot adopt (another pool, no libstrata) stays an O_PATH one: every read
 * or write fails with EBADF, never reaching another file.
 */
#include "shim.h"
#include "strata_internal.h"
#include "kb/scm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int share_sent(int fd, void *arg)
{
    (void)arg;
    if (ofd_share_fd(fd) == 0)
        return 0;
    fprintf(stderr, "strata: cannot share fd %d to send it over a socket (%s)\n", fd, strerror(errno));
    return -1;
}

static int adopt_received(int fd, void *arg)
{
    (void)arg;
    ofd_adopt_received(fd); /* says why on stderr when it cannot */
    return 0;
}

ssize_t sendmsg(int sock, const struct msghdr *m, int flags)
{
    if (!SHIM_FOREIGN_CHILD() && G.base != NULL && kb_scm_each_fd(m, share_sent, NULL) != 0)
        return -1; /* errno from the share; nothing sent */
    return REAL(sendmsg)(sock, m, flags);
}

int sendmmsg(int sock, struct mmsghdr *v, unsigned int n, int flags)
{
    for (unsigned int i = 0; i < n && !SHIM_FOREIGN_CHILD() && G.base != NULL; i++)
        if (kb_scm_each_fd(&v[i].msg_hdr, share_sent, NULL) != 0)
            return -1;
    return REAL(sendmmsg)(sock, v, n, flags);
}

int recvmmsg(int sock, struct mmsghdr *v, unsigned int n, int flags, struct timespec *timeout)
{
    int r = REAL(recvmmsg)(sock, v, n, flags, timeout);
    if (r > 0 && !SHIM_FOREIGN_CHILD()) {
        int e = errno;
        for (int i = 0; i < r; i++)
            kb_scm_each_fd(&v[i].msg_hdr, adopt_received, NULL);
        errno = e;
    }
    return r;
}

ssize_t recvmsg(int sock, struct msghdr *m, int flags)
{
    ssize_t r = REAL(recvmsg)(sock, m, flags);
    if (r >= 0 && !SHIM_FOREIGN_CHILD()) {
        int e = errno;
        kb_scm_each_fd(m, adopt_received, NULL);
        errno = e;
    }
    return r;
}
