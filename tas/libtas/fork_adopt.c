/*
 * A program exec'd by a forked child with inherited connections among its
 * descriptors (inetd style: the connection on its stdin and stdout; git
 * daemon, xinetd services).  Its libtas fork marker (fork_child.c) lists
 * them.  Such programs often write through stdio, whose buffered writes
 * reach the kernel without passing any LD_PRELOAD shim, so libtas does not
 * serve those descriptors itself: each inherited connection becomes one end
 * of a kernel socketpair, and a relay process takes the connection over
 * (sock_claim.c) and copies bytes both ways.  The relay is a child, so it
 * outlives the program and still delivers what the program wrote just
 * before it exited; it ends once both directions are closed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "interpose.h"

#define MAX_ADOPTED 16         /* inherited connections per program */
#define MAX_FDS 8              /* descriptors of one connection (stdin, stdout, ...) */
#define FIN_WAIT_MS 60000

struct adopted {
    uint32_t flow;
    int family;                /* of the parent's socket (AF_INET6: dual-stack) */
    int fds[MAX_FDS], nfds;
};

/* What the relay tells the program once it has the connection (or not). */
struct relay_report {
    int status;                /* 0, or -errno: the take-over failed */
    uint32_t local_ip, remote_ip;
    uint16_t local_port, remote_port;
};

/* The program's relayed connections, by the inode of its socketpair end:
 * getpeername & co. answer for the TCP connection, not the socketpair (an
 * inetd service checks who connected: rsync's "hosts allow", sshd -i). */
static struct relayed {
    dev_t dev;
    ino_t ino;
    int family;
    struct relay_report r;
} relayed[MAX_ADOPTED];
static int nrelayed;

/* Copy from one descriptor to the other; 0 at end of stream or error. */
static int pump(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));
    for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return 0;
        off += w;
    }
    return n > 0;
}

static void relay(int tas, int local)
{
    signal(SIGPIPE, SIG_IGN);
    struct pollfd p[2] = {{.fd = tas, .events = POLLIN}, {.fd = local, .events = POLLIN}};
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        /* once the program is done, wait for the peer's end as Linux's
         * FIN_WAIT_2 does (tcp_fin_timeout), not forever */
        int r = poll(p, 2, p[1].fd < 0 ? FIN_WAIT_MS : -1);
        if (r == 0 || (r < 0 && errno != EINTR))
            break;
        if (r < 0)
            continue;
        if (p[0].revents && !pump(tas, local)) {        /* the peer is done */
            shutdown(local, SHUT_WR);
            p[0].fd = -1;
        }
        if (p[1].revents && !pump(local, tas)) {        /* the program is done */
            shutdown(tas, SHUT_WR);
            p[1].fd = -1;
        }
    }
    close(tas);
    close(local);
}

/* The relay holds nothing of the program's but the descriptors in keep: not
 * the program's stdout (a pipe someone waits on to close, say), nor its
 * other connections.  Its stdio becomes /dev/null. */
static void keep_only(const int *keep, int nkeep)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    int self = dirfd(d), fds[256], n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && n < 256;) {
        int fd = atoi(e->d_name), kept = fd == self;
        for (int i = 0; i < nkeep; i++)
            kept |= fd == keep[i];
        if (e->d_name[0] != '.' && !kept)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        REAL(close)(fds[i]);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2 && null >= 0; fd++)
        if (fd != null)
            REAL(dup2)(null, fd);
    if (null > 2)
        REAL(close)(null);
}

/* In the relay: take the connection over now, with the program's stderr
 * (err) as stderr, so that a failure (the daemon refused this process: an
 * NVM arena full under kbrun --orp, say) is said where the program's own
 * messages go; the TAS socket's fd, or -errno. */
static int claim_now(const struct adopted *a, int marker, int err, struct relay_report *rep)
{
    if (err >= 0)
        REAL(dup2)(err, 2);
    struct lt_sock *s = lt_sock_new();
    int t = -ENOMEM;
    if (s != NULL) {
        s->claim_flow = a->flow + 1;
        s->family = AF_INET;
        lt_lock();
        lt_fork_marker_keep(marker, 1);   /* held until the claim */
        t = lt_fd_install(s, 1);
        int st = t >= 0 ? lt_claim(s) : -EMFILE;
        *rep = (struct relay_report){.status = st, .local_ip = s->local_ip, .remote_ip = s->remote_ip,
                                     .local_port = s->local_port, .remote_port = s->remote_port};
        lt_unlock();
        if (st != 0)
            t = st;
    }
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        REAL(dup2)(null, 2);
        REAL(close)(null);
    }
    if (err >= 0)
        REAL(close)(err);
    return t;
}

/* The connection's descriptors become one end of a socketpair; a relay
 * child holds the other and the connection.  The program waits until the
 * relay has taken the connection over: if it could not, the descriptors
 * stay placeholders, whose use fails at once (EBADF), rather than a pair
 * whose bytes would go nowhere. */
static void start_relay(const struct adopted *a, int marker)
{
    int sv[2], st[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    if (pipe2(st, O_CLOEXEC) != 0) {
        REAL(close)(sv[0]);
        REAL(close)(sv[1]);
        return;
    }
    pid_t pid = REAL(fork)();
    if (pid == 0) {
        int keep[] = {sv[1], marker, st[1], REAL(fcntl)(2, F_DUPFD_CLOEXEC, 3)};
        keep_only(keep, 4);
        struct relay_report rep = {.status = -ENOMEM};
        int t = claim_now(a, marker, keep[3], &rep);
        ssize_t w = REAL(write)(st[1], &rep, sizeof(rep));
        (void)w;
        REAL(close)(st[1]);
        if (t >= 0)
            relay(t, sv[1]);
        _exit(t >= 0 ? 0 : 1);
    }
    REAL(close)(st[1]);
    struct relay_report rep = {.status = -ECHILD};
    while (pid > 0 && REAL(read)(st[0], &rep, sizeof(rep)) < 0 && errno == EINTR)
        ;
    REAL(close)(st[0]);
    struct stat sb;
    if (pid > 0 && rep.status == 0) {
        for (int i = 0; i < a->nfds; i++)
            REAL(dup2)(sv[0], a->fds[i]);
        if (fstat(sv[0], &sb) == 0 && nrelayed < MAX_ADOPTED)
            relayed[nrelayed++] = (struct relayed){.dev = sb.st_dev, .ino = sb.st_ino,
                                                   .family = a->family, .r = rep};
    }
    REAL(close)(sv[0]);
    REAL(close)(sv[1]);
}

/* A TAS socket's placeholder (fd_table.c lt_fd_install). */
static int is_placeholder(int fd)
{
    int fl = REAL(fcntl)(fd, F_GETFL);
    return fl >= 0 && (fl & O_PATH);
}

/* The marker's "fd flow family" lines, for descriptors still open (an exec
 * closed the close-on-exec ones), grouped by connection. */
static int read_marker(int marker, struct adopted *out)
{
    FILE *m = fdopen(REAL(dup)(marker), "r");
    if (m == NULL)
        return 0;
    rewind(m);
    int fd, family, n = 0;
    unsigned flow;
    char line[64];
    while (fgets(line, sizeof(line), m) != NULL) {
        family = AF_INET;
        if (sscanf(line, "%d %u %d", &fd, &flow, &family) < 2)
            continue;
        if (fd < 0 || !is_placeholder(fd))
            continue;          /* closed by the exec, and maybe its number reused */
        int k = 0;
        while (k < n && out[k].flow != flow)
            k++;
        if (k == n && n == MAX_ADOPTED)
            continue;
        if (k == n)
            out[n++] = (struct adopted){.flow = flow, .family = family};
        int dup_fd = 0;
        for (int i = 0; i < out[k].nfds; i++)
            dup_fd |= out[k].fds[i] == fd;
        if (!dup_fd && out[k].nfds < MAX_FDS)
            out[k].fds[out[k].nfds++] = fd;
    }
    fclose(m);
    return n;
}

static int find_marker(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int marker = -1;
    const char *want = "/memfd:" LT_FORK_MARKER;
    for (struct dirent *e; (e = readdir(d)) != NULL && marker < 0;) {
        char path[300], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n > 0) {
            link[n] = '\0';
            if (strncmp(link, want, strlen(want)) == 0)
                marker = atoi(e->d_name);
        }
    }
    closedir(d);
    return marker;
}

static const struct relayed *relayed_of(int fd)
{
    struct stat sb;
    if (nrelayed == 0 || fstat(fd, &sb) != 0 || !S_ISSOCK(sb.st_mode))
        return NULL;
    for (int i = 0; i < nrelayed; i++)
        if (relayed[i].ino == sb.st_ino && relayed[i].dev == sb.st_dev)
            return &relayed[i];
    return NULL;
}

int lt_relayed_addr(int fd, int peer, struct sockaddr *addr, socklen_t *len)
{
    const struct relayed *x = relayed_of(fd);
    if (x == NULL)
        return 0;
    lt_fill_addr_family(x->family, addr, len, peer ? x->r.remote_ip : x->r.local_ip,
                        peer ? x->r.remote_port : x->r.local_port);
    return 1;
}

int lt_relayed_sockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    if (level != SOL_SOCKET || (name != SO_DOMAIN && name != SO_TYPE && name != SO_PROTOCOL) ||
        val == NULL || len == NULL)
        return 0;
    const struct relayed *x = relayed_of(fd);
    if (x == NULL)
        return 0;
    int v = name == SO_DOMAIN ? x->family : name == SO_TYPE ? SOCK_STREAM : IPPROTO_TCP;
    memcpy(val, &v, *len < sizeof(v) ? *len : sizeof(v));
    *len = *len < sizeof(v) ? *len : sizeof(v);
    return 1;
}

/* An inherited connection only on descriptors above stderr: the program
 * reaches it through libtas (stdio does not write there), so it stays a TAS
 * socket that the program's first use takes over (sock_claim.c), as in a
 * forked child that did not exec.  A helper that merely inherited it (a
 * server's connection without close-on-exec) never takes it, and the
 * parent keeps the connection, as on Linux; before, the relay took every
 * inherited connection at once and the parent's writes went nowhere. */
static int adopt_lazily(const struct adopted *a)
{
    struct lt_sock *s = lt_sock_new();
    if (s == NULL)
        return 0;
    s->claim_flow = a->flow + 1;
    s->family = a->family;
    lt_lock();
    for (int i = 0; i < a->nfds; i++) {
        s->refs++;
        lt_fd_map(a->fds[i], s);   /* the placeholder there stays */
    }
    lt_unlock();
    return 1;
}

static int on_stdio(const struct adopted *a)
{
    for (int i = 0; i < a->nfds; i++)
        if (a->fds[i] <= 2)
            return 1;
    return 0;
}

/* A connection on stdin, stdout or stderr (inetd style) is relayed at once;
 * the others wait for the program's first use.  The program keeps its
 * marker while any of those is neither taken over nor closed: the parent's
 * close of a connection waits while it is open. */
__attribute__((constructor)) static void adopt_inherited(void)
{
    int marker = find_marker();
    if (marker < 0)
        return;
    struct adopted a[MAX_ADOPTED];
    int n = read_marker(marker, a), lazy = 0;
    for (int i = 0; i < n; i++) {
        if (on_stdio(&a[i]))
            start_relay(&a[i], marker);
        else
            lazy += adopt_lazily(&a[i]);
    }
    if (lazy > 0) {
        lt_lock();
        lt_fork_marker_keep(marker, lazy);
        lt_unlock();
    }
}
