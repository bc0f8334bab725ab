/*
 * Open file descriptions that outlive a process image (layout and rationale:
 * include/strata/strata_ofd.h).
 *
 * An OFD starts private (malloc'd state, the fd an O_PATH descriptor of
 * /dev/null: cheap to open, and EBADF for any read or write that bypasses
 * the shim).  Before anything can share it with another process -- fork,
 * vfork, posix_spawn, system, popen, exec -- it is *shared*: its state moves
 * into a memfd mapped MAP_SHARED, and every fd number of it is replaced (dup3,
 * keeping FD_CLOEXEC) by an O_PATH descriptor of that memfd.  From then on
 * every holder, in this program or the next, moves one offset.
 *
 * A new program's libstrata looks for such descriptors in /proc/self/fd at
 * start (ofd_scan), and adopts them once the pool is attached (ofd_adopt):
 * it maps the state and enters the fds in its table.  Close-on-exec is the
 * kernel's: a CLOEXEC fd is simply gone in the new program.
 */
#include "strata_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct strata_ofd *ofd_new(const char *path, uint32_t ino, uint32_t gen, int flags, int is_dir)
{
    size_t plen = strlen(path);
    if (plen >= sizeof(((struct strata_ofd *)0)->path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct strata_ofd *o = malloc(sizeof(*o));
    if (o == NULL)
        return NULL;
    o->magic = STRATA_OFD_MAGIC;
    o->version = STRATA_OFD_VERSION;
    o->is_dir = (uint32_t)is_dir;
    o->fs_id = G.sb->fs_id;
    o->ino = ino;
    o->gen = gen;
    o->flags = flags;
    o->lease_pid = 0;
    o->off = 0;
    o->path_len = (uint32_t)plen;
    o->pad = 0;
    memcpy(o->path, path, plen + 1);
    return o;
}

void ofd_free(struct sfile *f)
{
    if (f->shared)
        munmap(f->o, STRATA_OFD_SIZE);
    else
        free(f->o);
    f->o = NULL;
}

static int raw_close(int fd) { return (int)syscall(SYS_close, fd); }

/* Move f's state into a memfd and make each of its fd numbers an O_PATH
 * descriptor of it.  G.mu held. */
static int ofd_share(struct sfile *f, int limit)
{
    if (f->shared)
        return 0;
    int m = (int)syscall(SYS_memfd_create, STRATA_OFD_NAME, MFD_CLOEXEC);
    if (m < 0)
        return -1;
    struct strata_ofd *o = MAP_FAILED;
    int p = -1;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", m);
    if (syscall(SYS_ftruncate, m, STRATA_OFD_SIZE) == 0)
        o = mmap(NULL, STRATA_OFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (o != MAP_FAILED)
        p = (int)syscall(SYS_openat, AT_FDCWD, proc, O_PATH | O_CLOEXEC);
    raw_close(m);
    if (p < 0) {
        int e = errno;
        if (o != MAP_FAILED)
            munmap(o, STRATA_OFD_SIZE);
        errno = e;
        return -1;
    }
    memcpy(o, f->o, sizeof(*o));
    for (int fd = 0; fd < limit; fd++) {
        if (sfile_get(fd) != f)
            continue;
        int fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
        syscall(SYS_dup3, p, fd, (fdflags > 0 && (fdflags & FD_CLOEXEC)) ? O_CLOEXEC : 0);
    }
    raw_close(p);
    kb_stats_add(G.c.ofd_shared, 1);
    free(f->o);
    f->o = o;
    f->path = o->path;
    f->shared = 1;
    return 0;
}

int ofd_share_all(int inheritable_only)
{
    int limit = sfile_fd_limit(), rc = 0;
    for (int fd = 0; fd < limit; fd++) {
        struct sfile *f = sfile_get(fd);
        if (f == NULL || f->shared)
            continue;
        if (inheritable_only) {
            int fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
            if (fdflags < 0 || (fdflags & FD_CLOEXEC))
                continue;
        }
        if (ofd_share(f, limit) != 0) {
            fprintf(stderr, "strata: cannot share fd %d with a new process (%s); it will not be usable there\n",
                    fd, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* One fd's OFD into shared memory, for a process that will get that fd
 * number some other way (SCM_RIGHTS, a posix_spawn dup2 action).  The log is
 * digested first, so the other side sees every write so far.  0 when fd is
 * not a Strata fd. */
int ofd_share_fd(int fd)
{
    pthread_mutex_lock(&G.mu);
    struct sfile *f = G.base ? sfile_get(fd) : NULL;
    int rc = 0;
    if (f && !f->shared) {
        digest_own();
        rc = ofd_share(f, sfile_fd_limit());
    } else if (f) {
        digest_own();
    }
    pthread_mutex_unlock(&G.mu);
    return rc;
}

/* ---- the new program's side ---- */

#define MAX_INHERITED 1024
static struct {
    int fd;
    ino_t key;               /* memfd inode: fds of one OFD share it */
} found[MAX_INHERITED];
static int nfound;

int ofd_scan(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nfound < MAX_INHERITED) {
        char path[64], link[64];
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self)
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        if (strncmp(link, "/memfd:" STRATA_OFD_NAME " ", sizeof("/memfd:" STRATA_OFD_NAME)) != 0)
            continue;
        struct stat st;
        if (fstat(fd, &st) != 0)
            continue;
        found[nfound].fd = fd;
        found[nfound].key = st.st_ino;
        nfound++;
    }
    closedir(d);
    return nfound;
}

static struct strata_ofd *map_inherited(int fd)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int m = (int)syscall(SYS_openat, AT_FDCWD, proc, O_RDWR | O_CLOEXEC);
    if (m < 0)
        return NULL;
    struct strata_ofd *o = mmap(NULL, STRATA_OFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    raw_close(m);
    return o == MAP_FAILED ? NULL : o;
}

static const char *why_unusable(const struct strata_ofd *o)
{
    if (o == NULL)
        return "its state cannot be mapped";
    if (o->magic != STRATA_OFD_MAGIC || o->version != STRATA_OFD_VERSION)
        return "its state has an unknown format";
    if (G.base == NULL)
        return "the pool cannot be attached";
    if (o->fs_id != G.sb->fs_id)
        return "it belongs to another pool";
    if (o->ino == 0 || o->ino >= G.sb->ninodes)
        return "its state is corrupted";
    if (o->path_len >= sizeof(o->path) || o->path[o->path_len] != 0)
        return "its state is corrupted";
    return NULL;
}

/* A descriptor that arrived after start (SCM_RIGHTS): adopt it when it is
 * a Strata OFD.  1 adopted, 0 not a Strata fd, -1 a Strata fd that cannot
 * be used here (said on stderr; it stays an O_PATH descriptor: EBADF). */
int ofd_adopt_received(int fd)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n <= 0)
        return 0;
    link[n] = 0;
    struct stat st;
    if (strncmp(link, "/memfd:" STRATA_OFD_NAME " ", sizeof("/memfd:" STRATA_OFD_NAME)) != 0 ||
        fstat(fd, &st) != 0)
        return 0;
    strata_ensure_attached();
    pthread_mutex_lock(&G.mu);
    found[0].fd = fd;
    found[0].key = st.st_ino;
    nfound = 1;
    int r = ofd_adopt();
    pthread_mutex_unlock(&G.mu);
    return r == 1 ? 1 : -1;
}

/* Enter the scanned fds in the table (G.mu held, pool attached or not).
 * An fd that cannot be adopted stays an O_PATH descriptor: every use of it
 * fails with EBADF, and we say why. */
int ofd_adopt(void)
{
    int adopted = 0;
    for (int i = 0; i < nfound; i++) {
        if (found[i].fd < 0)
            continue;
        struct strata_ofd *o = map_inherited(found[i].fd);
        const char *why = why_unusable(o);
        if (why) {
            fprintf(stderr, "strata: inherited fd %d is a Strata file, but %s: using it fails with EBADF\n",
                    found[i].fd, why);
            if (o)
                munmap(o, STRATA_OFD_SIZE);
            continue;
        }
        struct sfile *f = calloc(1, sizeof(*f));
        if (f == NULL) {
            munmap(o, STRATA_OFD_SIZE);
            continue;
        }
        f->o = o;
        f->ino = o->ino;
        f->gen = o->gen;
        f->is_dir = (int)o->is_dir;
        f->path = o->path;
        f->shared = 1;
        sfile_adopt(f);
        for (int j = i; j < nfound; j++)
            if (found[j].fd >= 0 && found[j].key == found[i].key) {
                sfile_install(found[j].fd, f);
                if (j != i)
                    found[j].fd = -1;
            }
        found[i].fd = -1;
        adopted++;
        kb_stats_add(G.c.ofd_adopted, 1);
    }
    nfound = 0;
    return adopted;
}
