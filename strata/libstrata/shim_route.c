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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kb/env.h"

char shim_cwd_path[PATH_MAX];


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
