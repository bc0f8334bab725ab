/*
 * Echo benchmark program for zIO (bench/zio_echo.py drives it).
 *
 *   zio_echo server PORT SIZE K   one connection: per message, recv SIZE
 *                                 bytes into a static buffer, make K chained
 *                                 copies into freshly malloc'd buffers, send
 *                                 the last one back, free the copies.
 *   zio_echo client PORT SIZE SECONDS
 *                                 send messages (distinct contents each),
 *                                 verify every echoed byte; prints
 *                                 "<messages> <seconds>"; exit 1 on mismatch.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int xfer(int fd, void *buf, size_t n, int in)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = in ? recv(fd, (char *)buf + done, n - done, 0)
                       : send(fd, (char *)buf + done, n - done, 0);
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int server(int port, size_t size, int k)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1)) {
        perror("bind/listen");
        return 2;
    }
    printf("listening\n");
    fflush(stdout);
    int fd = accept(ls, NULL, NULL);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char *in = malloc(size), *copy[8];
    while (xfer(fd, in, size, 1) == 0) {
        char *last = in;
        for (int i = 0; i < k; i++) {
            copy[i] = malloc(size);
            memcpy(copy[i], last, size);
            last = copy[i];
        }
        if (xfer(fd, last, size, 0) != 0)
            break;
        for (int i = 0; i < k; i++)
            free(copy[i]);
    }
    char c;   /* stay alive (stats page readable) until the driver lets go */
    return read(0, &c, 1) < 0;
}

static int client(int port, size_t size, double seconds)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        perror("connect");
        return 2;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    unsigned char *out = malloc(size), *back = malloc(size);
    for (size_t i = 0; i < size; i++)
        out[i] = (unsigned char)(i * 131 + 17);
    double start = now(), t = start;
    uint64_t n = 0;
    while (t - start < seconds) {
        /* every message differs: a stamp every 1 KiB */
        for (size_t i = 0; i + 8 <= size; i += 1024)
            memcpy(out + i, &n, 8);
        if (xfer(fd, out, size, 0) || xfer(fd, back, size, 1))
            return 2;
        if (memcmp(out, back, size) != 0) {
            fprintf(stderr, "mismatch in message %llu\n", (unsigned long long)n);
            return 1;
        }
        n++;
        if ((n & 7) == 0 || size >= 65536)
            t = now();
    }
    printf("%llu %.6f\n", (unsigned long long)n, now() - start);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "server"))
        return server(atoi(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]) > 8 ? 8 : atoi(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "client"))
        return client(atoi(argv[2]), (size_t)atol(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: %s server PORT SIZE K | client PORT SIZE SECONDS\n", argv[0]);
    return 2;
}
