/* SCM_RIGHTS descriptors of a message (include/kb/scm.h). */
#include "kb/scm.h"

#include <string.h>

int kb_scm_each_fd(const struct msghdr *m, int (*fn)(int fd, void *arg), void *arg)
{
    if (m == NULL || m->msg_control == NULL || m->msg_controllen < sizeof(struct cmsghdr))
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd)); /* may be unaligned */
            int r = fn(fd, arg);
            if (r != 0)
                return r;
        }
    }
    return 0;
}
