/*
 * Crash-test helper (C API user).
 *   strata_crashwriter write POOL SEED   runs single-syscall file ops forever;
 *       before each op it prints "I <op>" and after it returns (and, for
 *       data, after fsync) it prints "D", so the test knows what is durable.
 *   strata_crashwriter mkfs POOL         small test pool (64 MiB, 1 MiB logs)
 *   strata_crashwriter tear POOL MODE    simulated power loss (tear_tail.c);
 *       prints "torn <slots>".
 *   strata_crashwriter verify POOL       mounts (recovers), prints
 *       "F <name> <hex content>" per file under /cw and "fsck <problems>".
 * Ops: C name (create), A name len (append), T name size (truncate),
 *      R from to (rename), U name (unlink).
 */
#include "strata/strata_api.h"
#include "tear_tail.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAMES 6

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(1, line, (size_t)n) != n)
        exit(3);
}

static int run(const char *pool, unsigned seed)
{
    if (strata_attach(pool) != 0)
        return 2;
    strata_mkdir("/cw", 0755);
    int fds[NAMES];
    long sizes[NAMES];
    for (int i = 0; i < NAMES; i++)
        fds[i] = -1, sizes[i] = 0;
    static char buf[8192];
    for (long k = 0;; k++) {
        int i = rand_r(&seed) % NAMES, op = rand_r(&seed) % 10;
        char name[32], to[32];
        snprintf(name, sizeof(name), "/cw/f%d", i);
        if (fds[i] < 0) {
            say("I C %s\n", name);
            fds[i] = strata_open(name, O_CREAT | O_WRONLY | O_APPEND, 0644);
            sizes[i] = 0;
        } else if (op < 6) {
            long len = 1 + rand_r(&seed) % 5000;
            for (long j = 0; j < len; j++)
                buf[j] = (char)((k * 31 + j) & 0xff);
            say("I A %s %ld %ld\n", name, len, k);
            if (strata_write(fds[i], buf, (size_t)len) != len || strata_fsync(fds[i]) != 0)
                return 4;
            sizes[i] += len;
        } else if (op < 7) {
            long size = sizes[i] / 2;
            say("I T %s %ld\n", name, size);
            if (strata_ftruncate(fds[i], size) != 0)
                return 5;
            sizes[i] = size;
        } else if (op < 9) {
            int j = (i + 1 + rand_r(&seed) % (NAMES - 1)) % NAMES;
            snprintf(to, sizeof(to), "/cw/f%d", j);
            say("I R %s %s\n", name, to);
            if (strata_rename(name, to) != 0)
                return 6;
            if (fds[j] >= 0)
                strata_close(fds[j]);
            fds[j] = fds[i], sizes[j] = sizes[i], fds[i] = -1;
        } else {
            strata_close(fds[i]);
            fds[i] = -1;
            say("I U %s\n", name);
            if (strata_unlink(name) != 0)
                return 7;
        }
        say("D\n");
    }
}

static int verify(const char *pool)
{
    static char report[65536];
    int problems = strata_fsck(pool, report, sizeof(report));
    struct strata_dirent_out *ents;
    int n = strata_listdir("/cw", &ents);
    for (int i = 0; i < n; i++) {
        char path[300];
        snprintf(path, sizeof(path), "/cw/%s", ents[i].name);
        int fd = strata_open(path, O_RDONLY, 0);
        static unsigned char data[1 << 22];
        ssize_t len = fd < 0 ? -1 : strata_read(fd, data, sizeof(data));
        printf("F %s ", ents[i].name);
        for (ssize_t j = 0; j < len; j++)
            printf("%02x", data[j]);
        printf("\n");
        strata_close(fd);
    }
    printf("fsck %d\n%s", problems, report);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "write") == 0)
        return run(argv[2], (unsigned)atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "mkfs") == 0)
        return strata_mkfs(argv[2], 64u << 20, 8, 1u << 20, 1024) == 0 ? 0 : 1;
    if (argc >= 4 && strcmp(argv[1], "tear") == 0) {
        int torn = tear_tail(argv[2], atoi(argv[3]));
        if (torn < 0) {
            perror("tear");
            return 1;
        }
        printf("torn %d\n", torn);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "verify") == 0)
        return verify(argv[2]);
    fprintf(stderr, "usage: %s mkfs|write|tear|verify POOL [SEED|MODE]\n", argv[0]);
    return 1;
}
