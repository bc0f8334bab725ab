/*
 * Routing: which paths are Strata's.  Paths under the mount prefix
 * ($STRATA_MOUNT, default /strata), and relative ones while the (virtual)
 * working directory is inside it.  The working directory itself lives here
 * (shim_cwd_path); shim_cwd.c's chdir family changes it.  Below every other
 * shim file.
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kb/env.h"

char shim_cwd_path[PATH_MAX];
uint32_t shim_cwd_ino, shim_cwd_gen;
void (*shim_cwd_moved)(void);

/* The working directory as a pool path, NULL outside Strata.  The directory
 * is the one entered (shim_cwd_ino, noted at its first use), not its path:
 * renamed (or below a renamed directory), its path is made again from the
 * inode and shim_cwd_moved told; removed, nothing resolves under it (Linux:
 * ENOENT).  It used to be the path it was entered by: after `mv` of the
 * working directory relative paths failed with ENOENT, or reached the
 * directory made at the old name since. */
const char *shim_vcwd(void)
{
    if (!shim_cwd_path[0])
        return NULL;
    if (G.base == NULL || SHIM_FOREIGN_CHILD())
        return shim_cwd_path; /* not attached yet (the path carried over exec), or a vfork child */
    const char *p = shim_cwd_path;
    pthread_mutex_lock(&G.mu);
    uint32_t ino;
    if (shim_cwd_ino == 0) {
        if (path_resolve(shim_cwd_path, &ino) == 0 && S_ISDIR(G.inodes[ino].mode)) {
            shim_cwd_ino = ino;
            shim_cwd_gen = G.inodes[ino].gen;
        }
    } else {
        int r = strata_dir_path_fresh(shim_cwd_ino, shim_cwd_gen, shim_cwd_path, sizeof(shim_cwd_path));
        if (r > 0 && shim_cwd_moved)
            shim_cwd_moved(); /* shim_cwd.c: the environment for exec */
        else if (r < 0)
            p = strata_removed_dir;
    }
    pthread_mutex_unlock(&G.mu);
    return p;
}


static char prefix[PATH_MAX];
static size_t prefix_len;
static void init_prefix(void);

const char *shim_prefix(void)
{
    init_prefix();
    return prefix;
}

static void init_prefix(void)
{
    if (prefix_len)
        return;
    const char *p = kb_getenv("STRATA_MOUNT");
    snprintf(prefix, sizeof(prefix), "%s", p && *p ? p : "/strata");
    prefix_len = strlen(prefix);
    while (prefix_len > 1 && prefix[prefix_len - 1] == '/')
        prefix[--prefix_len] = 0;
}

static int join(char out[PATH_MAX], const char *dir, const char *rel)
{
    int n = snprintf(out, PATH_MAX, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
    if (n >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 1;
}

int shim_route(const char *path, char out[PATH_MAX])
{
    if (path == NULL)
        return 0;
    init_prefix();
    if (path[0] != '/') {
        if (!shim_vcwd())
            return 0;
        if (path[0] == 0) { /* as the kernel: "" names nothing */
            errno = ENOENT;
            return -1;
        }
        return join(out, shim_vcwd(), path);
    }
    if (strncmp(path, prefix, prefix_len) != 0 || (path[prefix_len] != '/' && path[prefix_len] != 0))
        return 0;
    snprintf(out, PATH_MAX, "%s", path[prefix_len] ? path + prefix_len : "/");
    return 1;
}

/* A kernel directory fd above the mount point, and a path that walks down
 * into it (coreutils' mkdir -p, find and rm -r descend with openat from "/"):
 * route when the joined path lands under the prefix.  Only paths naming the
 * mount point's last component pay for the readlink. */
static int route_below_kernel_dir(int dirfd, const char *path, char out[PATH_MAX])
{
    init_prefix();
    const char *base = strrchr(prefix, '/');
    if (prefix_len <= 1 || strstr(path, base + 1) == NULL)
        return 0;
    char link[64], dir[PATH_MAX], full[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, dir, sizeof(dir) - 1);
    if (n <= 0 || dir[0] != '/')
        return 0;
    dir[n] = 0;
    if (join(full, dir, path) < 0)
        return -1;
    return shim_route(full, out);
}

int shim_route_at(int dirfd, const char *path, char out[PATH_MAX])
{
    if (path == NULL || path[0] == '/' || dirfd == AT_FDCWD)
        return shim_route(path, out);
    const char *dir = strata_fd_path(dirfd);
    return dir ? join(out, dir, path) : route_below_kernel_dir(dirfd, path, out);
}

/*
 * /dev/stdin, /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N,
 * /proc/thread-self/fd/N and /proc/<own pid>/fd/N name the file of fd N:
 * the kernel reopens it.  A Strata fd's kernel fd is a placeholder (an
 * O_PATH descriptor of /dev/null, or of its state memfd once shared), so
 * these paths reached the placeholder: `cat /dev/stdin < /strata/f` read
 * nothing, or the memfd's bytes, and `echo x > /dev/stdout` with stdout on
 * a Strata file wrote into /dev/null or over the shared description's
 * state.  For opens and stats that follow links they name the Strata file
 * (a directory fd's with the rest of the path); the calls that act on the
 * name itself (lstat, readlink, unlink, rename) still go to the kernel.
 */
static int route_fd_link(const char *path, char out[PATH_MAX])
{
    if (path == NULL || (strncmp(path, "/dev/", 5) != 0 && strncmp(path, "/proc/", 6) != 0))
        return 0;
    static const struct { const char *name; int fd; } std[] = {
        {"/dev/stdin", 0}, {"/dev/stdout", 1}, {"/dev/stderr", 2}};
    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++)
        if (strcmp(path, std[i].name) == 0)
            return strata_is_fd(std[i].fd) ? strata_fd_reopen_path(std[i].fd, out) : 0;
    const char *q = NULL;
    if (strncmp(path, "/dev/fd/", 8) == 0)
        q = path + 8;
    else if (strncmp(path, "/proc/self/fd/", 14) == 0)
        q = path + 14;
    else if (strncmp(path, "/proc/thread-self/fd/", 21) == 0)
        q = path + 21;
    else if (path[6] >= '1' && path[6] <= '9') {
        char *e;
        long pid = strtol(path + 6, &e, 10);
        if (pid == (long)syscall(SYS_getpid) && strncmp(e, "/fd/", 4) == 0)
            q = e + 4;
    }
    if (q == NULL || *q < '0' || *q > '9')
        return 0;
    char *e;
    long fd = strtol(q, &e, 10);
    if ((*e != 0 && *e != '/') || fd > INT_MAX || !strata_is_fd((int)fd))
        return 0;
    char file[PATH_MAX];
    int r = strata_fd_reopen_path((int)fd, file);
    if (r <= 0)
        return r;
    if (*e == 0) {
        memcpy(out, file, strlen(file) + 1);
        return 1;
    }
    return join(out, file, e + 1);
}

int shim_route_follow(const char *path, char out[PATH_MAX])
{
    int r = route_fd_link(path, out);
    return r != 0 ? r : shim_route(path, out);
}

int shim_route_at_follow(int dirfd, const char *path, char out[PATH_MAX])
{
    if (path != NULL && path[0] == '/')
        return shim_route_follow(path, out);
    return shim_route_at(dirfd, path, out);
}
