/* libc's own socket and fd calls, for everything that is not a TAS socket. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "interpose.h"

struct libc_fns real;

#define RESOLVE(name) (*(void **)&real.name = dlsym(RTLD_NEXT, #name))

void libc_real_init(void)
{
    RESOLVE(socket);
    RESOLVE(fork);
    RESOLVE(close_range);
    RESOLVE(bind);
    RESOLVE(listen);
    RESOLVE(accept4);
    RESOLVE(connect);
    RESOLVE(getsockname);
    RESOLVE(getpeername);
    RESOLVE(setsockopt);
    RESOLVE(getsockopt);
    RESOLVE(shutdown);
    RESOLVE(dup);
    RESOLVE(dup2);
    RESOLVE(dup3);
    RESOLVE(fcntl);
    RESOLVE(ioctl);
    RESOLVE(read);
    RESOLVE(readv);
    RESOLVE(write);
    RESOLVE(writev);
    RESOLVE(recvfrom);
    RESOLVE(recvmsg);
    RESOLVE(sendto);
    RESOLVE(sendmsg);
    RESOLVE(poll);
    RESOLVE(ppoll);
    RESOLVE(select);
    RESOLVE(pselect);
    RESOLVE(epoll_create1);
    RESOLVE(epoll_ctl);
    RESOLVE(epoll_wait);
    RESOLVE(epoll_pwait);
    RESOLVE(fstat);
    RESOLVE(fstat64);
    RESOLVE(fstatat);
    RESOLVE(fstatat64);
    RESOLVE(statx);
    RESOLVE(sendfile);
    RESOLVE(sendfile64);
    RESOLVE(fdopen);
    RESOLVE(fileno);
    RESOLVE(fileno_unlocked);
    /* close last: wrappers test it to know the table is complete */
    RESOLVE(close);
}

__attribute__((constructor)) static void libc_real_ctor(void)
{
    if (real.close == NULL)
        libc_real_init();
}
