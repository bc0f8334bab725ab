/*
 * conn_client: a closed-loop short-connection client over plain kernel
 * sockets: SLOTS connections in flight, each connect, write SIZE bytes, read
 * the echo, close, again.  The client closes first (as HTTP/1.0 clients and
 * the Python client of bench/tas_conn.py do).
 *
 *   conn_client [-s SRC_IP,SRC_IP,...] [-r] IP PORT SIZE SLOTS WARMUP_S DURATION_S
 *
 * -r: close with a RST (SO_LINGER 0) instead of a FIN.
 * -s: slot i binds to the (i mod n)-th address before it connects.  A
 * client that closes first keeps each (source, port) pair in TIME_WAIT, and
 * the kernel's port search for a reusable pair caps one source address at
 * about 30,000 connections a second whatever the server; many clients do
 * not share that cap, so with several addresses the server's stack is what
 * is measured.
 *
 * Prints one JSON line: connections per second over the measured window,
 * p50/p99 of connect-to-first-reply and of connect-to-close, and how many
 * connects failed with EADDRNOTAVAIL (ephemeral ports all in TIME_WAIT) and
 * were retried.  C, so that the client's own CPU per connection (a third of
 * a CPU at 10,000 connections a second in Python) does not cap the rate.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
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

#define MAX_SLOTS 256
#define MAX_MSG 4096
#define MAX_SAMPLES (1 << 23)

struct slot {
    int fd, idx;
    uint32_t got;
    double started, replied;
};

static struct sockaddr_in peer;
#define MAX_SRC 64
static struct sockaddr_in srcs[MAX_SRC];
static int nsrc;
static int close_rst;
static uint32_t msg_size;
static unsigned long addr_retries;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "conn_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Start a new connection in slot s: non-blocking connect, wait for writable. */
static void slot_open(int ep, struct slot *s)
{
    for (;;) {
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0)
            die("socket");
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (nsrc > 0) {
            /* the port is chosen at connect, for the whole 4-tuple */
            setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
            const struct sockaddr_in *a = &srcs[s->idx % nsrc];
            if (bind(s->fd, (const struct sockaddr *)a, sizeof(*a)) != 0)
                die("bind");
        }
        s->started = now_s();
        s->got = 0;
        if (connect(s->fd, (struct sockaddr *)&peer, sizeof(peer)) == 0 || errno == EINPROGRESS)
            break;
        if (errno != EADDRNOTAVAIL)
            die("connect");
        close(s->fd);   /* every ephemeral port is in TIME_WAIT: try again */
        addr_retries++;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        die("epoll_ctl");
}

/* The connection is up: send the request and wait for the echo. */
static void slot_send(int ep, struct slot *s)
{
    static const char msg[MAX_MSG];
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == EADDRNOTAVAIL) {
        /* as from connect itself: a stack that picks the port after
         * connect returned (TAS) says so here */
        close(s->fd);
        addr_retries++;
        slot_open(ep, s);
        return;
    }
    if (err != 0) {
        errno = err;
        die("connect (async)");
    }
    if (write(s->fd, msg, msg_size) != (ssize_t)msg_size)
        die("write");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Echo bytes arrived: 1 once the whole reply is in. */
static int slot_read(struct slot *s)
{
    char sink[MAX_MSG];
    ssize_t r = read(s->fd, sink, sizeof(sink));
    if (r == 0) {
        fprintf(stderr, "conn_client: server closed before replying\n");
        exit(1);
    }
    if (r < 0) {
        if (errno == EAGAIN)
            return 0;
        die("read");
    }
    s->got += (uint32_t)r;
    return s->got >= msg_size;
}

int main(int argc, char **argv)
{
    const char *usage = "usage: conn_client [-s SRC_IP,...] [-r] IP PORT SIZE SLOTS WARMUP_S "
                        "DURATION_S\n";
    char *src_list = NULL;
    for (int o; (o = getopt(argc, argv, "s:r")) != -1;) {
        if (o == 's')
            src_list = optarg;
        else if (o == 'r')
            close_rst = 1;
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 6) {
        fputs(usage, stderr);
        return 2;
    }
    argv += optind - 1;   /* positional arguments from argv[1] on */
    msg_size = (uint32_t)atoi(argv[3]);
    int nslots = atoi(argv[4]);
    if (msg_size == 0 || msg_size > MAX_MSG || nslots < 1 || nslots > MAX_SLOTS) {
        fprintf(stderr, "conn_client: size 1..%d, slots 1..%d\n", MAX_MSG, MAX_SLOTS);
        return 2;
    }
    peer.sin_family = AF_INET;
    peer.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &peer.sin_addr) != 1) {
        fprintf(stderr, "conn_client: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    if (src_list != NULL) {
        for (char *tok = strtok(src_list, ","); tok != NULL; tok = strtok(NULL, ",")) {
            if (nsrc == MAX_SRC || inet_pton(AF_INET, tok, &srcs[nsrc].sin_addr) != 1) {
                fprintf(stderr, "conn_client: bad or too many source addresses at %s\n", tok);
                return 2;
            }
            srcs[nsrc++].sin_family = AF_INET;
        }
    }
    double *first = malloc(sizeof(double) * MAX_SAMPLES);
    double *whole = malloc(sizeof(double) * MAX_SAMPLES);
    struct slot *slots = calloc((size_t)nslots, sizeof(*slots));
    int ep = epoll_create1(0);
    if (first == NULL || whole == NULL || slots == NULL || ep < 0)
        die("setup");
    double start = now_s() + atof(argv[5]), end = start + atof(argv[6]);
    size_t n = 0;
    for (int i = 0; i < nslots; i++) {
        slots[i].idx = i;
        slot_open(ep, &slots[i]);
    }
    for (double t = now_s(); t < end; t = now_s()) {
        struct epoll_event evs[MAX_SLOTS];
        int k = epoll_wait(ep, evs, MAX_SLOTS, 100);
        if (k < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < k; i++) {
            struct slot *s = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                slot_send(ep, s);
                continue;
            }
            if (!slot_read(s))
                continue;
            s->replied = now_s();
            if (close_rst) {
                struct linger l = {.l_onoff = 1, .l_linger = 0};
                setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            }
            close(s->fd);   /* also takes it out of the epoll set */
            double closed = now_s();
            if (s->started >= start && closed <= end && n < MAX_SAMPLES) {
                first[n] = s->replied - s->started;
                whole[n++] = closed - s->started;
            }
            slot_open(ep, s);
        }
    }
    qsort(first, n, sizeof(double), cmp_double);
    qsort(whole, n, sizeof(double), cmp_double);
    size_t p99 = (size_t)((double)n * 0.99);
    double dur = end - start;
    printf("{\"conns_per_s\": %.1f, \"conns\": %zu, \"first_p50_us\": %.1f, "
           "\"first_p99_us\": %.1f, \"whole_p50_us\": %.1f, \"whole_p99_us\": %.1f, "
           "\"addr_retries\": %lu}\n",
           (double)n / dur, n, n ? first[n / 2] * 1e6 : 0, n ? first[p99] * 1e6 : 0,
           n ? whole[n / 2] * 1e6 : 0, n ? whole[p99] * 1e6 : 0, addr_retries);
    return 0;
}
