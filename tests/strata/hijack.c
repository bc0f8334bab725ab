/*
 * A program that defines names libstrata uses inside: internals (G,
 * log_append, file_size) and an API function (strata_open).  libstrata must
 * keep calling its own: its internals are not exported (libstrata.map) and
 * its own API calls bind locally (-Bsymbolic-functions).  Writes and reads a
 * file through the shim (open/write/read on STRATA_MOUNT) and prints "ok".
 *   strata_hijack POOL        (STRATA_POOL/STRATA_MOUNT set by the caller)
 */
#include "strata/strata_api.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char G[4096];                        /* libstrata's global is also named G */

void *log_append(void *hdr, const void *payload, size_t len);
void *log_append(void *hdr, const void *payload, size_t len)
{
    (void)hdr, (void)payload, (void)len;
    fprintf(stderr, "hijacked: log_append\n");
    abort();
}

unsigned long file_size(const void *inode);
unsigned long file_size(const void *inode)
{
    (void)inode;
    fprintf(stderr, "hijacked: file_size\n");
    abort();
}

int strata_open(const char *path, int flags, unsigned int mode)
{
    (void)path, (void)flags, (void)mode;
    fprintf(stderr, "hijacked: strata_open\n");
    abort();
}

int main(int argc, char **argv)
{
    if (argc != 2 || strata_mkfs(argv[1], 64u << 20, 4, 1u << 20, 256) != 0) {
        perror("mkfs");
        return 1;
    }
    const char msg[] = "written through the shim";
    int fd = open("/strata/f", O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || !strata_is_fd(fd) || write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg)) {
        perror("write");
        return 1;
    }
    close(fd);
    char back[sizeof(msg)] = {0};
    fd = open("/strata/f", O_RDONLY);
    if (fd < 0 || read(fd, back, sizeof(back)) != (ssize_t)sizeof(back) || memcmp(back, msg, sizeof(msg))) {
        perror("read");
        return 1;
    }
    close(fd);
    G[0] = 1; /* ours, untouched by libstrata */
    printf("ok\n");
    return 0;
}
