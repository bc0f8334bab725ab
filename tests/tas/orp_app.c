/*
 * An unmodified-style TCP server for the zIO-over-TAS tests: plain socket
 * calls, run under `zio run` + `tas-run`.  It accepts one connection and
 * reads NVAL values of VLEN bytes, each into a fresh malloc'd buffer, then
 *   sink:  writes each value to OUT (a regular file) and frees it, or with
 *          KEEP=1 keeps every value until all have arrived, then writes them;
 *   echo:  copies each value to a second buffer (a zIO intermediate of the
 *          first) and writes that back to the connection, then frees both.
 * It prints "fstat-sock <0|1>" (what fstat says of the connection), closes
 * it, prints "done", and waits for a line on stdin so that the test can read
 * its stats pages before it exits.
 *
 * With FORKAT > 0 (sink), after that many values (waited for until all
 * arrived) it forks a child that exits at once, as a server forking a
 * snapshot child would.  With STOPAT
 * > 0 (sink) it closes the connection after that many values, unread
 * bytes left in the ring.
 * It also prints what fstatat(AT_EMPTY_PATH) and statx say.
 *
 * usage: orp_app sink PORT NVAL VLEN OUT KEEP [FORKAT [STOPAT]] | orp_app echo PORT NVAL VLEN
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void read_all(int fd, char *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            die("read");
        got += (size_t)r;
    }
}

static void write_all(int fd, const char *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = write(fd, buf + done, n - done);
        if (r <= 0)
            die("write");
        done += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    int echo = strcmp(argv[1], "echo") == 0;
    int port = atoi(argv[2]), nval = atoi(argv[3]);
    size_t vlen = (size_t)atol(argv[4]);
    int keep = !echo && argc > 6 && atoi(argv[6]);
    int forkat = !echo && argc > 7 ? atoi(argv[7]) : 0;
    int stopat = !echo && argc > 8 ? atoi(argv[8]) : 0;
    int out = -1;
    if (!echo && (out = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
        die("open");
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 4) != 0)
        die("listen");
    printf("listening\n");
    fflush(stdout);
    int c = accept(ls, NULL, NULL);
    if (c < 0)
        die("accept");
    struct stat st, st_at;
    struct statx stx;
    if (fstat(c, &st) != 0 || fstatat(c, "", &st_at, AT_EMPTY_PATH) != 0 ||
        statx(c, "", AT_EMPTY_PATH, STATX_TYPE, &stx) != 0)
        die("fstat");
    /* Let the values that matter arrive whole before reading: more than it
     * reads before stopping, or those held at the fork (a value read in
     * pieces on a loaded machine would be copied, not held). */
    int wait_for = stopat > 0 ? stopat + 1 : forkat;
    for (int ready = 0; wait_for > 0 && ioctl(c, FIONREAD, &ready) == 0 &&
                        (size_t)ready < (size_t)wait_for * vlen;)
        usleep(1000);
    if (stopat > 0)
        nval = stopat;
    char **vals = calloc((size_t)nval, sizeof(*vals));
    for (int i = 0; i < nval; i++) {
        if (forkat > 0 && i == forkat) {
            pid_t pid = fork();
            if (pid < 0)
                die("fork");
            if (pid == 0)
                _exit(0);
            waitpid(pid, NULL, 0);
        }
        char *buf = malloc(vlen);
        if (buf == NULL)
            die("malloc");
        read_all(c, buf, vlen);
        if (keep) {
            vals[i] = buf;
            continue;
        }
        if (echo) {
            char *copy = malloc(vlen);
            if (copy == NULL)
                die("malloc");
            memcpy(copy, buf, vlen);
            write_all(c, copy, vlen);
            free(copy);
        } else {
            write_all(out, buf, vlen);
        }
        free(buf);
    }
    for (int i = 0; keep && i < nval; i++) {
        write_all(out, vals[i], vlen);
        free(vals[i]);
    }
    printf("fstat-sock %d%d%d\n", S_ISSOCK(st.st_mode) ? 1 : 0, S_ISSOCK(st_at.st_mode) ? 1 : 0,
           S_ISSOCK(stx.stx_mode) ? 1 : 0);
    close(c);
    close(ls);
    if (out >= 0)
        close(out);
    printf("done\n");
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof(line), stdin) == NULL)
        return 0;
    return 0;
}
