/* fdopen on a TAS socket.  glibc's stdio reads and writes a stream's
 * descriptor with its own system calls, which never reach the shim: on the
 * placeholder (an O_PATH descriptor) fdopen failed with EINVAL, and a C
 * program that wraps its socket in a FILE (fprintf, fgets: inetd services,
 * small servers and clients) could not run.  A TAS socket's stream is a
 * cookie stream whose reads and writes are recv and send (the shim's), its
 * close the descriptor's close; fileno gives the descriptor back. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interpose.h"

struct cookie {
    int fd;
    FILE *f;
    struct cookie *next;
};

static struct cookie *streams;        /* under the shim lock */

static ssize_t cookie_read(void *c, char *buf, size_t len)
{
    return recv(((struct cookie *)c)->fd, buf, len, 0);
}

/* The number of bytes taken, 0 on an error (errno set; a cookie writer
 * must not return a negative count).  SIGPIPE as write(2) raises it. */
static ssize_t cookie_write(void *c, const char *buf, size_t len)
{
    ssize_t r = send(((struct cookie *)c)->fd, buf, len, 0);
    return r < 0 ? 0 : r;
}

static int cookie_close(void *c)
{
    struct cookie *k = c;
    lt_lock();
    for (struct cookie **p = &streams; *p != NULL; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            break;
        }
    }
    lt_unlock();
    int fd = k->fd;
    free(k);
    return close(fd);
}

FILE *fdopen(int fd, const char *mode)
{
    if (lt_sock_of(fd) == NULL)
        return REAL(fdopen)(fd, mode);
    struct cookie *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    k->fd = fd;
    cookie_io_functions_t io = {.read = cookie_read, .write = cookie_write,
                                .seek = NULL, .close = cookie_close};
    FILE *f = fopencookie(k, mode, io);
    if (f == NULL) {
        free(k);
        return NULL;
    }
    k->f = f;
    lt_lock();
    k->next = streams;
    streams = k;
    lt_unlock();
    return f;
}

static int stream_fd(FILE *f)
{
    int fd = -1;
    if (__atomic_load_n(&streams, __ATOMIC_RELAXED) == NULL)
        return -1;
    lt_lock();
    for (struct cookie *k = streams; k != NULL; k = k->next)
        if (k->f == f)
            fd = k->fd;
    lt_unlock();
    return fd;
}

int fileno(FILE *f)
{
    int fd = stream_fd(f);
    return fd >= 0 ? fd : REAL(fileno)(f);
}

int fileno_unlocked(FILE *f)
{
    int fd = stream_fd(f);
    return fd >= 0 ? fd : REAL(fileno_unlocked)(f);
}
