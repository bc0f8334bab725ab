/*
 * File locks on Strata fds are the kernel's: every open file description of
 * an inode gets a kernel descriptor of the inode's lock file,
 * /dev/shm/strata.<fs_id>.<ino>.<gen>.lock (the same name in every process
 * of the pool), and fcntl record locks, OFD locks, flock and lockf are taken
 * on it.  So conflicts between processes, F_GETLK's answer (pid included),
 * blocking, deadlock detection and release at exit are the kernel's;
 * flock and OFD locks belong to the open file description (shared over
 * fork), POSIX locks to the process.
 *
 * What the shim adds: offsets relative to SEEK_CUR/SEEK_END become SEEK_SET
 * (the lock file is empty and its offset 0), a read lock needs an fd open
 * for reading and a write lock one open for writing (EBADF), and closing any
 * fd of the file releases the process's POSIX locks on it (POSIX).  Lock
 * files are created 0666 (they hold no data) and removed once their inode
 * is freed (locks_sweep).  Lock descriptors are close-on-exec: flock and
 * OFD locks held over an exec are dropped (the kernel would keep them).
 *
 * Lock-aware processes.  Strata's leases allow one writing process per file
 * and show a process's writes to others only once it digests; programs that
 * lock (sqlite with several connections in several processes) coordinate
 * their writers themselves and expect a write to be visible to the next
 * lock holder.  So from its first lock, a process is lock-aware: it gives up
 * its leases (after digesting) and takes none again, a writable open or a
 * write of it does not wait for another process's lease, and its writes are
 * published (digested: the shared area has them, so every process reads
 * them, and digest order is the order the locks imposed) before it releases
 * or downgrades any lock (F_UNLCK, F_RDLCK, LOCK_UN, LOCK_SH, a close that
 * drops locks).  A lock-aware process that also has a shared mapping
 * publishes each write and truncate before the call returns: programs like
 * sqlite in WAL mode announce new data through mapped memory (the -shm
 * index) while still holding their lock, and a reader must find the bytes
 * that index points to.  Before a lock is taken, the logs of dead
 * processes are recovered, so a writer killed while holding a lock cannot
 * have its last write replayed later over the next holder's.
 */
#include "shim.h"
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "kb/env.h"

struct lockfd {
    struct sfile *f;
    int fd;
    struct lockfd *next;
};

static struct lockfd *lockfds;
int strata_lock_aware;

/* Recover the logs of dead processes (a killed lock holder's last write)
 * before the caller may take its lock (G.mu held). */
static void recover_dead_writers(void)
{
    for (uint32_t i = 0; i < G.sb->nslots; i++) {
        pid_t o = G.slots[i].owner_pid;
        if (o != 0 && o != G.pid && kill(o, 0) != 0 && errno == ESRCH) {
            if (strata_pool_lock() == 0) {
                digest_dead_slots();
                strata_pool_unlock();
            }
            return;
        }
    }
}

/* STRATA_SHARED_WRITERS=1 (`strata run --shared-writers`): for programs
 * whose processes write the same files at once and coordinate through
 * shared memory rather than file locks (PostgreSQL's backends, checkpointer
 * and WAL writer): lock-aware from the start, so no leases, and each write
 * and truncate is published before the call returns, so every process reads
 * what another wrote a moment ago. */
static int shared_writers;

void strata_shared_writers_init(void)
{
    const char *s = kb_getenv("STRATA_SHARED_WRITERS");
    shared_writers = s != NULL && *s != '\0' && strcmp(s, "0") != 0;
    if (shared_writers)
        strata_lock_aware = 1;
}

/* The first lock makes this process lock-aware: digest, drop its leases. */
static void become_lock_aware(void)
{
    if (strata_lock_aware)
        return;
    strata_lock_aware = 1;
    if (digest_own() != 0 || strata_pool_lock() != 0)
        return;
    for (uint32_t i = STRATA_ROOT_INO + 1; i < G.sb->ninodes; i++)
        if (G.inodes[i].mode != 0 && G.inodes[i].lease_pid == G.pid && G.inodes[i].parent != STRATA_ORPHAN) {
            G.inodes[i].lease_pid = 0;
            strata_persist(&G.inodes[i].lease_pid, sizeof(G.inodes[i].lease_pid));
        }
    strata_pool_unlock();
}

static void publish_now(void)
{
    if (strata_lock_aware && G.slot >= 0 && G.tail > 0) {
        digest_own();
        kb_stats_add(G.c.published, 1);
    }
    /* many processes (PostgreSQL's), few writing at once; also after an
     * append that was digested as it was made (libfs_write.c) */
    if (strata_lock_aware && shared_writers && G.slot >= 0 && G.tail == 0)
        log_release_slot();
}

/* After each write and truncate (G.mu held). */
void strata_publish(void)
{
    if (shared_writers || shadow_has_maps())
        publish_now();
}

/* Before a lock is released or downgraded. */
static void publish_locked(void)
{
    pthread_mutex_lock(&G.mu);
    publish_now();
    pthread_mutex_unlock(&G.mu);
}

static struct lockfd *lock_find(struct sfile *f)
{
    for (struct lockfd *l = lockfds; l; l = l->next)
        if (l->f == f)
            return l;
    return NULL;
}

/* The kernel fd of f's lock file, opened on first use (G.mu held). */
static int lock_fd_of(struct sfile *f)
{
    struct lockfd *l = lock_find(f);
    if (l)
        return l->fd;
    char name[160];
    shadow_name(name, sizeof(name), f->ino, f->gen, "lock");
    int fd = strata_private_fd_high((int)syscall(SYS_openat, AT_FDCWD, name, O_RDWR | O_CREAT | O_CLOEXEC, 0666));
    if (fd < 0)
        return -1;
    syscall(SYS_fchmod, fd, 0666); /* any user who may open the file may lock it */
    if ((l = malloc(sizeof(*l))) == NULL) {
        syscall(SYS_close, fd);
        errno = ENOMEM;
        return -1;
    }
    *l = (struct lockfd){.f = f, .fd = fd, .next = lockfds};
    lockfds = l;
    kb_stats_add(G.c.lock_files, 1);
    return fd;
}

/* Look up the fd's lock descriptor and its access mode under G.mu; the
 * lock call itself runs without it (F_SETLKW may block). */
static int prepare(int fd, int *acc, struct sfile **fp)
{
    pthread_mutex_lock(&G.mu);
    struct sfile *f = sfile_get(fd);
    int lfd = f ? lock_fd_of(f) : (errno = EBADF, -1);
    if (lfd >= 0) {
        recover_dead_writers();
        become_lock_aware();
    }
    if (f) {
        *acc = f->o->flags & O_ACCMODE;
        if (fp)
            *fp = f;
    }
    pthread_mutex_unlock(&G.mu);
    return lfd;
}

int strata_lock_fcntl(int fd, int cmd, struct flock *fl)
{
    int acc;
    struct sfile *f;
    int lfd = prepare(fd, &acc, &f);
    if (lfd < 0)
        return -1;
    if (fl == NULL) {
        errno = EFAULT;
        return -1;
    }
    struct flock k = *fl;
    if (k.l_whence == SEEK_CUR || k.l_whence == SEEK_END) {
        pthread_mutex_lock(&G.mu);
        int64_t base = k.l_whence == SEEK_CUR ? (int64_t)f->o->off : (int64_t)file_size(f->ino, f->gen);
        pthread_mutex_unlock(&G.mu);
        k.l_start += base;
        k.l_whence = SEEK_SET;
    } else if (k.l_whence != SEEK_SET) {
        errno = EINVAL;
        return -1;
    }
    int setting = cmd != F_GETLK && cmd != F_OFD_GETLK;
    if (setting && ((k.l_type == F_RDLCK && acc == O_WRONLY) || (k.l_type == F_WRLCK && acc == O_RDONLY))) {
        errno = EBADF;
        return -1;
    }
    kb_stats_add(G.c.locks, 1);
    if (setting && k.l_type != F_WRLCK)
        publish_locked(); /* a release or downgrade: the next holder reads our writes */
    int rc = (int)REAL(fcntl)(lfd, cmd, &k);
    if (rc == 0 && !setting)
        *fl = k;
    return rc;
}

int strata_flock(int fd, int op)
{
    int acc;
    int lfd = prepare(fd, &acc, NULL);
    if (lfd < 0)
        return -1;
    kb_stats_add(G.c.locks, 1);
    if (op & (LOCK_UN | LOCK_SH))
        publish_locked();
    return (int)REAL(flock)(lfd, op);
}

/* lockf as glibc builds it on fcntl: [offset, offset+len) from the file
 * position, len 0 to the end (negative: before the position). */
int strata_lockf(int fd, int cmd, off_t len)
{
    struct flock fl = {.l_whence = SEEK_CUR, .l_start = 0, .l_len = len};
    switch (cmd) {
    case F_TEST:
        fl.l_type = F_WRLCK;
        if (strata_lock_fcntl(fd, F_GETLK, &fl) != 0)
            return -1;
        if (fl.l_type == F_UNLCK || fl.l_pid == getpid())
            return 0;
        errno = EACCES;
        return -1;
    case F_ULOCK:
        fl.l_type = F_UNLCK;
        return strata_lock_fcntl(fd, F_SETLK, &fl);
    case F_LOCK:
        fl.l_type = F_WRLCK;
        return strata_lock_fcntl(fd, F_SETLKW, &fl);
    case F_TLOCK:
        fl.l_type = F_WRLCK;
        return strata_lock_fcntl(fd, F_SETLK, &fl);
    }
    errno = EINVAL;
    return -1;
}

/* Any close of an fd of the file drops the process's POSIX locks on it;
 * the last close of an open file description closes its lock fd (which
 * drops its flock and OFD locks, as the kernel does). */
void locks_on_close(struct sfile *f, int last)
{
    for (struct lockfd *l = lockfds; l; l = l->next)
        if (l->f->ino == f->ino && l->f->gen == f->gen) {
            publish_now();
            struct flock un = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
            REAL(fcntl)(l->fd, F_SETLK, &un);
            break;
        }
    if (!last)
        return;
    for (struct lockfd **pp = &lockfds; *pp; pp = &(*pp)->next)
        if ((*pp)->f == f) {
            struct lockfd *l = *pp;
            *pp = l->next;
            syscall(SYS_close, l->fd);
            free(l);
            return;
        }
}

/* Each file of this pool in /dev/shm (strata.<fs_id>.<ino>.<gen>.<kind>:
 * lock files here, shadows in mmap_shadow.c): fn(path, ino, gen, kind). */
void strata_shm_each(void (*fn)(const char *path, unsigned ino, unsigned gen, const char *kind))
{
    char prefix[64];
    int n = snprintf(prefix, sizeof(prefix), "strata.%016" PRIx64 ".", G.sb->fs_id);
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned ino, gen;
        char kind[8];
        if (strncmp(e->d_name, prefix, (size_t)n) != 0 ||
            sscanf(e->d_name + n, "%u.%u.%7s", &ino, &gen, kind) != 3)
            continue;
        char path[320];
        snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
        fn(path, ino, gen, kind);
    }
    closedir(d);
}

static void sweep_lock_file(const char *path, unsigned ino, unsigned gen, const char *kind)
{
    if (strcmp(kind, "lock") == 0 && !(ino < G.sb->ninodes && ino_alive(ino, gen)))
        syscall(SYS_unlinkat, AT_FDCWD, path, 0);
}

/* Lock files of inodes that are free or reused (pool lock held). */
void locks_sweep(void)
{
    strata_shm_each(sweep_lock_file);
}

/* Kernel fds libstrata keeps for itself (lock files here, shadows in
 * mmap_shadow.c): close and close_range of them pretend, dup2/dup3 onto one
 * move it first, as for the pool's lock fd (shim_fd.c). */
int strata_private_fd(int fd)
{
    if (fd < 0)
        return 0;
    for (struct lockfd *l = lockfds; l; l = l->next)
        if (l->fd == fd)
            return 1;
    return shadow_owns_fd(fd);
}

int strata_private_fd_in(unsigned first, unsigned last)
{
    for (struct lockfd *l = lockfds; l; l = l->next)
        if ((unsigned)l->fd >= first && (unsigned)l->fd <= last)
            return 1;
    return shadow_owns_fd_in(first, last);
}

/* Move a new private fd to the top quarter of the fd limit, away from the
 * numbers a program reuses (a double close of a low number stays EBADF). */
int strata_private_fd_high(int fd)
{
    struct rlimit rl;
    if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 256)
        return fd;
    long lo = (long)(rl.rlim_cur > 65536 ? 65536 : rl.rlim_cur) * 3 / 4;
    int n = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, lo);
    if (n < 0)
        return fd;
    syscall(SYS_close, fd);
    return n;
}

void strata_private_fd_move(int fd)
{
    if (!strata_private_fd(fd))
        return;
    int n = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3);
    if (n < 0)
        return;
    for (struct lockfd *l = lockfds; l; l = l->next)
        if (l->fd == fd)
            l->fd = n;
    shadow_fd_moved(fd, n);
    syscall(SYS_close, fd);
}
