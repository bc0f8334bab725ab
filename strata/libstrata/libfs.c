/*
 * LibFS open-file table, leases and process lifecycle.
 *
 * Each Strata fd is a real kernel fd (raw syscalls, so the shim never sees
 * them): an O_PATH descriptor of /dev/null while the open file description
 * is private to this process, of its state memfd once shared (ofd.c).  Fd
 * numbers cannot collide with kernel files; close, dup and F_SETFD behave as
 * the kernel's; and a read or write that bypasses the shim fails with EBADF
 * instead of reaching a placeholder.  The fd indexes our table.
 *
 * Leases: one writing process per file.  The lease (inode.lease_pid) is taken
 * on the first writable open and released on the last writable close, after
 * digesting this process's log so the next holder sees every write.  A
 * conflicting open waits up to $STRATA_LEASE_WAIT_MS (default 2000) and then
 * fails with EBUSY.  A lease held by a dead process is broken after its log
 * has been digested (recovery).
 */
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "kb/env.h"

#define FD_MAX 65536
static struct sfile *fdtab[FD_MAX];
static int fd_limit; /* 1 + highest fd ever entered in fdtab */

static void fdtab_set(int fd, struct sfile *f)
{
    fdtab[fd] = f;
    if (f && fd >= fd_limit)
        fd_limit = fd + 1;
}

int sfile_fd_limit(void) { return fd_limit; }

struct sfile *sfile_get(int fd)
{
    if (fd < 0 || fd >= FD_MAX || G.base == NULL)
        return NULL;
    return fdtab[fd];
}

int strata_is_fd(int fd)
{
    return fd >= 0 && fd < FD_MAX && fdtab[fd] != NULL;
}

static int reserve_fd(int cloexec)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_PATH | (cloexec ? O_CLOEXEC : 0));
    if (fd >= FD_MAX) {
        syscall(SYS_close, fd);
        errno = EMFILE;
        return -1;
    }
    return fd;
}

static long lease_wait_ms(void)
{
    const char *s = kb_getenv("STRATA_LEASE_WAIT_MS");
    return s ? atol(s) : 2000;
}

/* Once per process: why a writable open failed with EBUSY, and what a
 * program whose processes all write the same files needs. */
static void lease_busy_hint(uint32_t ino, int32_t holder)
{
    static int said;
    if (said++ || kb_getenv("STRATA_QUIET") != NULL)
        return;
    fprintf(stderr, "strata: inode %u is being written by process %d (EBUSY after "
            "STRATA_LEASE_WAIT_MS); a program whose processes write the same files "
            "at once without file locks (PostgreSQL) needs STRATA_SHARED_WRITERS=1 "
            "(strata run --shared-writers)\n", ino, (int)holder);
}

/* Take the write lease on ino (pool lock held on entry and exit). */
static int lease_take(uint32_t ino)
{
    struct strata_inode *in = &G.inodes[ino];
    long waited = 0, limit = lease_wait_ms();
    while (in->lease_pid != 0 && in->lease_pid != G.pid) {
        if (!strata_pid_alive(in->lease_pid)) {
            digest_dead_slots();
            break;
        }
        if (waited >= limit) {
            lease_busy_hint(ino, in->lease_pid);
            errno = EBUSY;
            return -1;
        }
        kb_stats_add(G.c.lease_waits, 1);
        strata_pool_unlock();
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        waited++;
        strata_pool_lock();
    }
    in->lease_pid = G.pid;
    strata_persist(&in->lease_pid, sizeof(in->lease_pid));
    return 0;
}

static void lease_release(uint32_t ino)
{
    if (--G.wlease[ino] > 0)
        return;
    digest_own();
    if (strata_pool_lock() != 0)
        return;
    if (G.inodes[ino].lease_pid == G.pid) {
        G.inodes[ino].lease_pid = 0;
        strata_persist(&G.inodes[ino].lease_pid, sizeof(G.inodes[ino].lease_pid));
    }
    strata_pool_unlock();
}

/* Resolve or create the file (pool lock held). */
static int open_inode(const char *path, int flags, unsigned int mode, uint32_t *ino)
{
    int created = 0; /* a file this open creates is opened whatever its mode says */
    int nofollow = (flags & O_NOFOLLOW) || ((flags & O_CREAT) && (flags & O_EXCL));
    if ((nofollow ? path_resolve_nofollow(path, ino) : path_resolve(path, ino)) == 0) {
        if (S_ISLNK(G.inodes[*ino].mode)) {
            errno = (flags & O_CREAT) && (flags & O_EXCL) ? EEXIST : ELOOP;
            return -1;
        }
        if ((flags & O_CREAT) && (flags & O_EXCL)) {
            errno = EEXIST;
            return -1;
        }
    } else {
        if (errno != ENOENT || !(flags & O_CREAT))
            return -1;
        uint32_t parent;
        const char *name;
        size_t nlen;
        if (path_parent(path, &parent, &name, &nlen) != 0)
            return -1;
        if (path[strlen(path) - 1] == '/') {
            errno = EISDIR;
            return -1;
        }
        if (dir_lookup(parent, name, nlen)) { /* a link to nothing: not created through it */
            errno = ENOENT;
            return -1;
        }
        if (perm_check(&G.inodes[parent], W_OK | X_OK, 0) != 0)
            return -1;
        if (ns_create(parent, name, nlen, S_IFREG | (mode & 07777), ino) != 0)
            return -1;
        created = 1;
    }
    struct strata_inode *in = &G.inodes[*ino];
    int acc = flags & O_ACCMODE;
    if (S_ISDIR(in->mode) && acc != O_RDONLY) {
        errno = EISDIR;
        return -1;
    }
    if (!S_ISDIR(in->mode) && (flags & O_DIRECTORY)) {
        errno = ENOTDIR;
        return -1;
    }
    int want = (acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK) | (flags & O_TRUNC ? W_OK : 0);
    if (!created && perm_check(in, want, 0) != 0)
        return -1;
    if (in->lease_pid != 0 && in->lease_pid != G.pid && !strata_pid_alive(in->lease_pid))
        lease_take(*ino); /* recovers the dead writer's log, then drops it */
    if (acc != O_RDONLY && G.wlease[*ino] == 0 && !strata_lock_aware) { /* locks.c */
        if (lease_take(*ino) != 0)
            return -1;
    } else if (acc == O_RDONLY && in->lease_pid == G.pid && G.wlease[*ino] == 0) {
        in->lease_pid = 0; /* taken above only to break a dead lease */
        strata_persist(&in->lease_pid, sizeof(in->lease_pid));
    }
    if (acc != O_RDONLY)
        G.wlease[*ino]++;
    return 0;
}

static int do_open(const char *path, int flags, unsigned int mode)
{
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_CREAT))
        if (ns_claim() != 0)
            return -1;
    if (strata_pool_lock() != 0)
        return -1;
    uint32_t ino;
    int rc = open_inode(path, flags, mode, &ino);
    strata_pool_unlock();
    if (rc != 0)
        return -1;
    int fd = reserve_fd(flags & O_CLOEXEC);
    struct sfile *f = calloc(1, sizeof(*f));
    int is_dir = S_ISDIR(G.inodes[ino].mode);
    int fl = flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || f == NULL || (f->o = ofd_new(path, ino, G.inodes[ino].gen, fl, is_dir)) == NULL) {
        int e = fd < 0 ? errno : f == NULL ? ENOMEM : errno;
        if (fd >= 0)
            syscall(SYS_close, fd);
        free(f);
        if ((flags & O_ACCMODE) != O_RDONLY)
            lease_release(ino);
        errno = e;
        return -1;
    }
    f->ino = ino;
    f->gen = G.inodes[ino].gen;
    f->is_dir = is_dir;
    f->refs = 1;
    f->owner = G.pid;
    f->path = f->o->path;
    if ((flags & O_ACCMODE) != O_RDONLY) {
        f->lease_owner = G.pid;
        f->o->lease_pid = G.pid;
    }
    fdtab_set(fd, f);
    G.opens[ino]++;
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && file_size(ino, f->gen) != 0 &&
        strata_ftruncate(fd, 0) != 0) {
        int e = errno;
        strata_close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int strata_open(const char *path, int flags, unsigned int mode)
{
    return LOCKED(do_open(path, flags, mode));
}

static int do_close(int fd)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    fdtab[fd] = NULL;
    syscall(SYS_close, fd);
    locks_on_close(f, f->refs == 1);
    if (--f->refs > 0)
        return 0;
    int was_writable = f->lease_owner == G.pid;
    if (f->owner == G.pid && G.opens[f->ino] == 1)
        shadow_on_close(f->ino, f->gen, was_writable); /* before the lease goes */
    if (f->lease_owner == G.pid)
        lease_release(f->ino);
    if (f->owner == G.pid && --G.opens[f->ino] == 0 && ino_alive(f->ino, f->gen) &&
        G.inodes[f->ino].parent == STRATA_ORPHAN && strata_pool_lock() == 0) {
        ino_free(f->ino); /* last close of an unlinked file */
        pend_drop(f->ino);
        strata_pool_unlock();
    }
    ofd_free(f);
    free(f);
    return 0;
}

int strata_close(int fd)
{
    return LOCKED(do_close(fd));
}

static int do_dup(int oldfd, int newfd)
{
    struct sfile *f = sfile_get(oldfd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    int fd;
    if (newfd < 0) {
        fd = (int)syscall(SYS_fcntl, oldfd, F_DUPFD, 0);
    } else {
        if (newfd == oldfd)
            return newfd;
        if (sfile_get(newfd))
            do_close(newfd);
        fd = (int)syscall(SYS_dup3, oldfd, newfd, 0);
    }
    if (fd < 0)
        return -1;
    if (fd >= FD_MAX) {
        syscall(SYS_close, fd);
        errno = EMFILE;
        return -1;
    }
    f->refs++;
    fdtab_set(fd, f);
    return fd;
}

int strata_dup(int oldfd, int newfd)
{
    return LOCKED(do_dup(oldfd, newfd));
}

/* A directory is named by its inode, not by the path it was entered by:
 * when path (cap bytes) no longer leads to directory ino of generation gen
 * (it, or a directory above it, was renamed, or the path went through a
 * directory since removed: `openat(c, "..")`, then `rmdir c`, as rm -rf
 * does below a depth of 4), it is made again from the inode (1); 0 when it
 * still does; -1 when the directory was removed.  G.mu held. */
int strata_dir_path_fresh(uint32_t ino, uint32_t gen, char *path, size_t cap)
{
    uint32_t now_ino;
    if (path_resolve(path, &now_ino) == 0 && now_ino == ino)
        return 0;
    char now[PATH_MAX];
    if (ino < G.sb->ninodes && G.inodes[ino].mode != 0 && G.inodes[ino].gen == gen &&
        dir_path_of(ino, now) == 0 && strlen(now) < cap) {
        memcpy(path, now, strlen(now) + 1);
        return 1;
    }
    return -1;
}

/* A directory fd's path made again if it no longer names its directory
 * (strata_dir_path_fresh's answer).  G.mu held. */
static int dir_fd_path_fresh(struct sfile *f)
{
    int r = strata_dir_path_fresh(f->ino, f->gen, f->o->path, sizeof(f->o->path));
    if (r > 0)
        f->o->path_len = (uint32_t)strlen(f->o->path);
    return r;
}

/* Names nothing: what calls relative to a removed directory resolve against. */
const char strata_removed_dir[] = "/\177strata: removed directory\177";

/* The pool path of the file fd names now, for a reopen through
 * /proc/self/fd/N and its aliases (shim_route.c): 1 and out, 0 when fd is not
 * a Strata fd, -1 (ENOENT) when its file no longer has that path (renamed
 * or removed since the fd was opened: no reopen, rather than another file). */
int strata_fd_reopen_path(int fd, char out[PATH_MAX])
{
    pthread_mutex_lock(&G.mu);
    struct sfile *f = sfile_get(fd);
    int rc = 0;
    if (f != NULL) {
        uint32_t ino;
        if (f->is_dir)
            dir_fd_path_fresh(f);
        rc = path_resolve(f->path, &ino) == 0 && ino == f->ino && G.inodes[ino].gen == f->gen ? 1 : -1;
        if (rc > 0)
            snprintf(out, PATH_MAX, "%s", f->path);
        else
            errno = ENOENT;
    }
    pthread_mutex_unlock(&G.mu);
    return rc;
}

/* The path calls relative to fd resolve against.  It used to be the path
 * the directory was opened by, for good: ENOENT for everything under it
 * once that path was gone (rm -rf failed with "fts_read failed"), or the
 * directory now at that name (files made in the wrong directory). */
const char *strata_fd_path(int fd)
{
    pthread_mutex_lock(&G.mu);
    struct sfile *f = sfile_get(fd);
    const char *path = f ? f->path : NULL;
    if (f != NULL && f->is_dir && dir_fd_path_fresh(f) < 0)
        path = strata_removed_dir;
    pthread_mutex_unlock(&G.mu);
    return path;
}

int strata_fd_flags(int fd)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    return f->o->flags;
}

int strata_fd_setflags(int fd, int flags)
{
    struct sfile *f = sfile_get(fd);
    if (f == NULL) {
        errno = EBADF;
        return -1;
    }
    int settable = O_APPEND | O_NONBLOCK;
    f->o->flags = (f->o->flags & ~settable) | (flags & settable);
    return 0;
}

void sfile_install(int fd, struct sfile *f)
{
    f->refs++;
    fdtab_set(fd, f);
}

/* An inherited OFD joins this process: count it as open here, and if the
 * previous program of this process (same pid: exec) held the write lease
 * for it, so does this one. */
void sfile_adopt(struct sfile *f)
{
    f->owner = G.pid;
    G.opens[f->ino]++;
    if ((f->o->flags & O_ACCMODE) != O_RDONLY && f->o->lease_pid == G.pid &&
        G.inodes[f->ino].lease_pid == G.pid) {
        f->lease_owner = G.pid;
        G.wlease[f->ino]++;
    }
}

/* Leases recorded for this pid that no open file of this program accounts
 * for: the previous program of this process (before exec) held them. */
void lease_release_stale(void)
{
    for (uint32_t i = STRATA_ROOT_INO + 1; i < G.sb->ninodes; i++) {
        struct strata_inode *in = &G.inodes[i];
        if (in->mode != 0 && in->lease_pid == G.pid && G.wlease[i] == 0 && in->parent != STRATA_ORPHAN) {
            in->lease_pid = 0;
            strata_persist(&in->lease_pid, sizeof(in->lease_pid));
        }
    }
}

/*
 * A write through f: this process holds the lease for it, or the process
 * holding the inode's lease shares this open file description (a parent
 * shell whose redirection the program inherited; it digested before the
 * fork, see strata_before_spawn).  Otherwise the lease is free or its
 * holder died: take it for this OFD; a different live writer means the
 * usual wait and EBUSY.
 */
int sfile_may_write(struct sfile *f)
{
    if (f->lease_owner == G.pid || strata_lock_aware) /* locks.c: no leases, writes published */
        return 0;
    int32_t holder = G.inodes[f->ino].lease_pid;
    if (holder == G.pid && G.wlease[f->ino] > 0)
        return 0;
    if (holder != 0 && holder != G.pid && holder == f->o->lease_pid) {
        /* the holder reads the shared area, not our log: digest this write
         * at once (the digest request is served right after it) */
        G.slots[G.slot].digest_request = 1;
        return 0;
    }
    if (strata_pool_lock() != 0)
        return -1;
    int rc = lease_take(f->ino);
    strata_pool_unlock();
    if (rc != 0)
        return -1;
    G.wlease[f->ino]++;
    f->lease_owner = G.pid;
    f->o->lease_pid = G.pid;
    return 0;
}

/* Before another process can come to share this one's files (fork, vfork,
 * posix_spawn, system, popen, exec): digest, so the other process sees every
 * write so far, and share the OFDs it will inherit. */
void strata_before_spawn(int inheritable_only)
{
    pthread_mutex_lock(&G.mu);
    if (G.base != NULL && G.pid == (pid_t)syscall(SYS_getpid)) {
        shadow_writeback_all(); /* an exec drops the mappings */
        digest_own();
        ofd_share_all(inheritable_only);
    }
    pthread_mutex_unlock(&G.mu);
}

/* After fork the child owns no log slot and no leases: it takes the lease
 * of an inherited writable file at its first write (sfile_may_write). */
static void atfork_prepare(void)
{
    strata_before_spawn(0);
    pthread_mutex_lock(&G.mu);
    bg_atfork_prepare();
}
static void atfork_parent(void)
{
    bg_atfork_parent();
    pthread_mutex_unlock(&G.mu);
}
static void atfork_child(void)
{
    bg_atfork_child(); /* no digest thread in the child */
    if (G.base != NULL) {
        G.pid = getpid();
        G.start = strata_proc_start(G.pid);
        G.slot = -1;
        G.tail = 0;
        G.credits_left = 0;
        G.lock_depth = 0;
        pend_clear_all();
        memset(G.wlease, 0, G.sb->ninodes * sizeof(*G.wlease));
        memset(G.opens, 0, G.sb->ninodes * sizeof(*G.opens));
        int fd = (int)syscall(SYS_openat, AT_FDCWD, G.path, O_RDWR | O_CLOEXEC);
        syscall(SYS_close, G.lock_fd); /* shares the parent's flock otherwise */
        G.lock_fd = fd;
    }
    /* The child's thread has a new tid, so it cannot unlock the recursive
     * mutex its parent locked in prepare: start it afresh. */
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&G.mu, &a);
    pthread_mutexattr_destroy(&a);
}

/* Runs before the shim's constructors (which redirect stdio to adopted fds). */
__attribute__((constructor(101))) static void libfs_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    if (ofd_scan() > 0 && strata_attach(NULL) != 0) {
        pthread_mutex_lock(&G.mu);
        ofd_adopt(); /* says why each fd is unusable */
        pthread_mutex_unlock(&G.mu);
    }
}

__attribute__((destructor)) static void libfs_fini(void)
{
    fflush(NULL); /* stdio buffers over Strata fds, before the pool goes away */
    strata_detach();
}
