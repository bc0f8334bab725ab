/*
 * rpc_echo: a closed-loop RPC echo client and server over plain POSIX
 * sockets and epoll, so the same unmodified binary runs on the kernel's TCP
 * and on TAS (under tas-run / libtas).
 *
 *   rpc_echo server PORT
 *   rpc_echo client IP PORT SIZE CONNS WARMUP_S DURATION_S
 *
 * The server echoes every byte it reads.  The client keeps one SIZE-byte
 * request in flight per connection and prints one JSON line: requests per
 * second and p50/p99 latency over the measured window.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_MSG 65536
#define MAX_SAMPLES (1 << 24)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "rpc_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("fcntl");
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- server ------------------------------------------------------------- */

struct sconn {
    int fd;
    uint32_t pend_off, pend_len;   /* echo bytes the socket did not take yet */
    char buf[MAX_MSG];
};

static void server_flush(int ep, struct sconn *c)
{
    while (c->pend_len > 0) {
        ssize_t w = write(c->fd, c->buf + c->pend_off, c->pend_len);
        if (w < 0) {
            if (errno != EAGAIN)
                c->pend_len = 0;
            break;
        }
        c->pend_off += (uint32_t)w;
        c->pend_len -= (uint32_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->pend_len ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void server_readable(int ep, struct sconn *c)
{
    if (c->pend_len > 0)
        return;    /* finish echoing first: the client waits for it anyway */
    ssize_t r = read(c->fd, c->buf, sizeof(c->buf));
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c);
        return;
    }
    if (r < 0)
        return;
    c->pend_off = 0;
    c->pend_len = (uint32_t)r;
    server_flush(ep, c);
}

static _Noreturn void run_server(int port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1024) != 0)
        die("listen");
    set_nonblock(ls);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("listening %d\n", port);
    fflush(stdout);
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct sconn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept(ls, NULL, NULL)) >= 0) {
                    set_nonblock(fd);
                    nodelay(fd);
                    /* (not calloc: zeroing the 64 KiB buffer per connection
                     * was a tenth of the server's CPU under churn) */
                    c = malloc(sizeof(*c));
                    if (c == NULL)
                        die("malloc");
                    c->fd = fd;
                    c->pend_off = c->pend_len = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (evs[i].events & EPOLLOUT) {
                server_flush(ep, c);
            } else {
                server_readable(ep, c);
            }
        }
    }
}

/* ---- client ------------------------------------------------------------- */

struct cconn {
    int fd;
    uint32_t sent, got;
    double started;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_client(const char *ip, int port, uint32_t size, int nconns, double warmup,
                      double duration)
{
    static char msg[MAX_MSG], sink[MAX_MSG];
    memset(msg, 'm', sizeof(msg));
    if (size == 0 || size > MAX_MSG || nconns < 1 || nconns > MAX_CONNS) {
        fprintf(stderr, "rpc_echo: size 1..%d, conns 1..%d\n", MAX_MSG, MAX_CONNS);
        return 2;
    }
    double *lat = malloc(sizeof(double) * MAX_SAMPLES);
    struct cconn *cs = calloc((size_t)nconns, sizeof(*cs));
    int ep = epoll_create1(0);
    if (lat == NULL || cs == NULL || ep < 0)
        die("setup");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            die("connect");
        nodelay(cs[i].fd);
        set_nonblock(cs[i].fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    double t0 = now_s(), start = t0 + warmup, end = start + duration;
    size_t nlat = 0;
    for (int i = 0; i < nconns; i++) {
        cs[i].started = now_s();
        ssize_t w = write(cs[i].fd, msg, size);
        cs[i].sent = w > 0 ? (uint32_t)w : 0;
    }
    while (now_s() < end) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct cconn *c = evs[i].data.ptr;
            if (c->sent < size) {    /* rare: the request did not fit at once */
                ssize_t w = write(c->fd, msg, size - c->sent);
                if (w > 0)
                    c->sent += (uint32_t)w;
            }
            ssize_t r = read(c->fd, sink, sizeof(sink));
            if (r == 0) {
                fprintf(stderr, "rpc_echo: server closed a connection\n");
                return 1;
            }
            if (r < 0)
                continue;
            c->got += (uint32_t)r;
            if (c->got < size)
                continue;
            double t = now_s();
            if (c->started >= start && t <= end && nlat < MAX_SAMPLES)
                lat[nlat++] = t - c->started;
            c->got = 0;
            c->started = t;
            ssize_t w = write(c->fd, msg, size);
            c->sent = w > 0 ? (uint32_t)w : 0;
        }
    }
    qsort(lat, nlat, sizeof(double), cmp_double);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    printf("{\"rps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"samples\": %zu}\n",
           (double)nlat / duration, p50 * 1e6, p99 * 1e6, nlat);
    for (int i = 0; i < nconns; i++)
        close(cs[i].fd);
    free(cs);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        run_server(atoi(argv[2]));
    if (argc == 8 && strcmp(argv[1], "client") == 0)
        return run_client(argv[2], atoi(argv[3]), (uint32_t)atoi(argv[4]), atoi(argv[5]),
                          atof(argv[6]), atof(argv[7]));
    fprintf(stderr, "usage: rpc_echo server PORT\n"
                    "       rpc_echo client IP PORT SIZE CONNS WARMUP_S DURATION_S\n");
    return 2;
}
