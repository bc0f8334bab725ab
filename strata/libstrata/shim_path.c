/*
 * LD_PRELOAD shim: path calls glibc implements with internal calls (so the
 * plain interposition of open/unlink/stat does not see them) -- remove,
 * realpath, mkstemp and friends -- and the link calls (hard links: EXDEV
 * across the mount).
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int strata_remove(const char *p)
{
    int r = strata_unlink(p);
    return r != 0 && errno == EISDIR ? strata_rmdir(p) : r;
}

int remove(const char *path) { ROUTE_OR(path, strata_remove(sp), REAL(remove)(path)); }

static int link_routed(int r1, const char *p1, int r2, const char *p2)
{
    if (r1 < 0 || r2 < 0)
        return -1;
    if (r1 != r2) {
        errno = EXDEV;
        return -1;
    }
    return strata_link(p1, p2);
}

int link(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    int r1 = shim_route(from, a), r2 = shim_route(to, b);
    return r1 == 0 && r2 == 0 ? REAL(link)(from, to) : link_routed(r1, a, r2, b);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags)
{
    char a[PATH_MAX], b[PATH_MAX];
    int r1 = shim_route_at(fd1, from, a), r2 = shim_route_at(fd2, to, b);
    return r1 == 0 && r2 == 0 ? REAL(linkat)(fd1, from, fd2, to, flags) : link_routed(r1, a, r2, b);
}

/* The target is stored as given; a link is followed inside Strata, an
 * absolute target under the mount prefix included. */
int symlink(const char *target, const char *to) { ROUTE_OR(to, strata_symlink(target, sp), REAL(symlink)(target, to)); }

int symlinkat(const char *target, int dirfd, const char *to)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, to, p);
    return r < 0 ? -1 : r ? strata_symlink(target, p) : REAL(symlinkat)(target, dirfd, to);
}

ssize_t readlink(const char *path, char *buf, size_t n)
{
    ROUTE_OR(path, strata_readlink(sp, buf, n), REAL(readlink)(path, buf, n));
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    char p[PATH_MAX];
    int r = shim_route_at(dirfd, path, p);
    return r < 0 ? -1 : r ? strata_readlink(p, buf, n) : REAL(readlinkat)(dirfd, path, buf, n);
}

/* realpath: every link resolved by LibFS, then the prefix put back. */
static char *strata_realpath(const char *pool_path, char *out)
{
    char norm[PATH_MAX], full[PATH_MAX];
    if (strata_realpath_pool(pool_path, norm) != 0)
        return NULL;
    int w = snprintf(full, sizeof(full), "%s%s", shim_prefix(), strcmp(norm, "/") ? norm : "");
    if (w >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    if (out == NULL)
        return strdup(full);
    memcpy(out, full, (size_t)w + 1);
    return out;
}

char *realpath(const char *path, char *out)
{
    char p[PATH_MAX];
    int r = shim_route(path, p);
    return r < 0 ? NULL : r ? strata_realpath(p, out) : REAL(realpath)(path, out);
}

char *__realpath_chk(const char *path, char *out, size_t outlen);
char *__realpath_chk(const char *path, char *out, size_t outlen)
{
    (void)outlen; /* glibc's check: out holds PATH_MAX, which ours honours */
    return realpath(path, out);
}

char *canonicalize_file_name(const char *path) { return realpath(path, NULL); }

/* ---- mkstemp family: the template's directory may be a Strata one ---- */

static int strata_mkstemp(char *tmpl, const char *pool_tmpl, int suffix, int flags)
{
    size_t len = strlen(tmpl);
    if (suffix < 0 || len < 6 + (size_t)suffix || memcmp(tmpl + len - suffix - 6, "XXXXXX", 6) != 0) {
        errno = EINVAL;
        return -1;
    }
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char pt[PATH_MAX];
    size_t plen = strlen(pool_tmpl);
    memcpy(pt, pool_tmpl, plen + 1);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t v = ((uint64_t)tv.tv_usec << 16) ^ (uint64_t)tv.tv_sec ^ ((uint64_t)getpid() << 32);
    for (int attempt = 0; attempt < 1000; attempt++) {
        for (int i = 0; i < 6; i++) {
            v = v * 6364136223846793005ULL + 1442695040888963407ULL;
            char c = chars[(v >> 33) % (sizeof(chars) - 1)];
            tmpl[len - suffix - 6 + i] = c;
            pt[plen - suffix - 6 + i] = c;
        }
        int fd = strata_open(pt, O_RDWR | O_CREAT | O_EXCL | (flags & ~O_ACCMODE), 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

#define MKSTEMP_BODY(suffix, flags, real_call)                               \
    char p[PATH_MAX];                                                        \
    int r = shim_route(tmpl, p);                                             \
    return r < 0 ? -1 : r ? strata_mkstemp(tmpl, p, (suffix), (flags)) : (real_call);

int mkstemp(char *tmpl) { MKSTEMP_BODY(0, 0, REAL(mkstemp)(tmpl)) }
int mkstemp64(char *tmpl) { MKSTEMP_BODY(0, 0, REAL(mkstemp64)(tmpl)) }
int mkostemp(char *tmpl, int flags) { MKSTEMP_BODY(0, flags, REAL(mkostemp)(tmpl, flags)) }
int mkostemp64(char *tmpl, int flags) { MKSTEMP_BODY(0, flags, REAL(mkostemp64)(tmpl, flags)) }
int mkstemps(char *tmpl, int sl) { MKSTEMP_BODY(sl, 0, REAL(mkstemps)(tmpl, sl)) }
int mkostemps(char *tmpl, int sl, int flags) { MKSTEMP_BODY(sl, flags, REAL(mkostemps)(tmpl, sl, flags)) }

char *mkdtemp(char *tmpl)
{
    char p[PATH_MAX];
    int r = shim_route(tmpl, p);
    if (r <= 0)
        return r < 0 ? NULL : REAL(mkdtemp)(tmpl);
    size_t len = strlen(tmpl), plen = strlen(p);
    if (len < 6 || memcmp(tmpl + len - 6, "XXXXXX", 6) != 0) {
        errno = EINVAL;
        return NULL;
    }
    for (int attempt = 0; attempt < 1000; attempt++) {
        unsigned v = (unsigned)getpid() * 2654435761u ^ (unsigned)attempt * 40503u ^ (unsigned)time(NULL);
        for (int i = 0; i < 6; i++, v /= 36)
            tmpl[len - 6 + i] = p[plen - 6 + i] = "abcdefghijklmnopqrstuvwxyz0123456789"[v % 36];
        if (strata_mkdir(p, 0700) == 0)
            return tmpl;
        if (errno != EEXIST)
            return NULL;
    }
    return NULL;
}
