/*
 * One thread sends an intermediate (an elided copy of file data) through a
 * slowly drained socket while another thread overwrites the original.  The
 * receiver must get the data as it was when copied.
 *
 * usage: zio_race_harness FILE ROUNDS [STATS_COPY]
 *        prints "ok", exit 1 on a mismatch
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stats_copy.h"

#define LEN (1 << 20)

static int sv[2];
static uint8_t *orig, *copy, *want;

static void *sender(void *arg)
{
    (void)arg;
    for (size_t off = 0; off < LEN;) {
        ssize_t w = send(sv[0], copy + off, LEN - off, 0);
        if (w <= 0) {
            perror("send");
            exit(2);
        }
        off += (size_t)w;
    }
    return NULL;
}

static void *overwriter(void *arg)
{
    (void)arg;
    usleep(2000);   /* let the send start */
    for (size_t i = 0; i < LEN; i += 4096)
        orig[i] ^= 0xFF;   /* one write per page: each a write fault */
    memset(orig, 0xEE, LEN);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    uint8_t *data = malloc(LEN);
    for (size_t i = 0; i < LEN; i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    if (pwrite(fd, data, LEN, 0) != LEN)
        return 2;
    orig = malloc(LEN + 4096);
    copy = malloc(LEN + 4096);
    want = malloc(LEN);
    uint8_t *got = malloc(LEN);
    for (int round = 0; round < atoi(argv[2]); round++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
            return 2;
        int small = 65536;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        if (pread(fd, orig, LEN, 0) != LEN)   /* input: orig becomes an original */
            return 2;
        memcpy(copy, orig, LEN);               /* elided under libzio */
        memcpy(want, data, LEN);
        pthread_t a, b;
        pthread_create(&a, NULL, sender, NULL);
        pthread_create(&b, NULL, overwriter, NULL);
        for (size_t off = 0; off < LEN;) {     /* slow reader */
            ssize_t r = read(sv[1], got + off, 16384);
            if (r <= 0)
                return 2;
            off += (size_t)r;
            usleep(50);
        }
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        close(sv[0]);
        close(sv[1]);
        if (memcmp(got, want, LEN) != 0) {
            printf("mismatch in round %d\n", round);
            return 1;
        }
    }
    if (argc > 3)
        copy_stats(argv[3]);
    printf("ok\n");
    return 0;
}
