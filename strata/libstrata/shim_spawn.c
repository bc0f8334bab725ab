/*
 * LD_PRELOAD shim: posix_spawn file actions.  glibc performs the actions in
 * the child with internal system calls, which bypass the shim: an open of a
 * /strata path would open (or create!) a file of that name on the kernel's
 * file system, and a dup2 of a Strata fd would copy its O_PATH placeholder.
 *
 * So the shim records every action added to a posix_spawn_file_actions_t
 * (the add functions are interposed and still build glibc's own list), and
 * posix_spawn, when the list opens a Strata path, runs a rebuilt list: each
 * such open is done in the parent through Strata (close-on-exec there), its
 * OFD is shared as before exec (ofd.c), and the child gets a dup2 of it onto
 * the wanted number; the parent closes its copy once the child is started.
 * A Strata fd named by a dup2 action is shared the same way.  What cannot
 * be done this way fails with an error from posix_spawn, never elsewhere:
 * a chdir action into Strata, a relative Strata path after a chdir action
 * (ENOTSUP), and an open that fails in the parent (its errno, no child).
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>

enum { A_CLOSE, A_DUP2, A_OPEN, A_CHDIR, A_FCHDIR, A_CLOSEFROM, A_TCSETPGRP };

struct act {
    int kind, fd, fd2, oflag;
    mode_t mode;
    char *path;
};

struct rec {
    const posix_spawn_file_actions_t *fa;
    struct act *a;
    uint32_t n, cap;
    int lost;                /* an action could not be recorded (ENOMEM) */
    struct rec *next;
};

static struct rec *recs;
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;

static struct rec **rec_slot(const posix_spawn_file_actions_t *fa)
{
    struct rec **r = &recs;
    while (*r && (*r)->fa != fa)
        r = &(*r)->next;
    return r;
}

static void rec_drop(const posix_spawn_file_actions_t *fa)
{
    pthread_mutex_lock(&rec_mu);
    struct rec **r = rec_slot(fa), *x = *r;
    if (x) {
        *r = x->next;
        for (uint32_t i = 0; i < x->n; i++)
            free(x->a[i].path);
        free(x->a);
        free(x);
    }
    pthread_mutex_unlock(&rec_mu);
}

static int rec_add(const posix_spawn_file_actions_t *fa, struct act a, int rc)
{
    if (rc != 0)
        return rc; /* glibc refused it: nothing to record */
    pthread_mutex_lock(&rec_mu);
    struct rec **r = rec_slot(fa);
    if (*r == NULL && (*r = calloc(1, sizeof(**r))) != NULL)
        (*r)->fa = fa;
    struct rec *x = *r;
    if (x && (x->n < x->cap || grow_array(&x->a, &x->cap, sizeof(*x->a)) == 0) &&
        (a.path == NULL || (a.path = strdup(a.path)) != NULL))
        x->a[x->n++] = a;
    else if (x)
        x->lost = 1;
    pthread_mutex_unlock(&rec_mu);
    return rc;
}

int posix_spawn_file_actions_init(posix_spawn_file_actions_t *fa)
{
    rec_drop(fa); /* the memory of a destroyed list may be reused */
    return REAL(posix_spawn_file_actions_init)(fa);
}

int posix_spawn_file_actions_destroy(posix_spawn_file_actions_t *fa)
{
    rec_drop(fa);
    return REAL(posix_spawn_file_actions_destroy)(fa);
}

int posix_spawn_file_actions_addclose(posix_spawn_file_actions_t *fa, int fd)
{
    return rec_add(fa, (struct act){.kind = A_CLOSE, .fd = fd}, REAL(posix_spawn_file_actions_addclose)(fa, fd));
}

int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t *fa, int fd, int newfd)
{
    return rec_add(fa, (struct act){.kind = A_DUP2, .fd = fd, .fd2 = newfd},
                   REAL(posix_spawn_file_actions_adddup2)(fa, fd, newfd));
}

int posix_spawn_file_actions_addopen(posix_spawn_file_actions_t *fa, int fd, const char *path, int oflag,
                                     mode_t mode)
{
    return rec_add(fa, (struct act){.kind = A_OPEN, .fd = fd, .oflag = oflag, .mode = mode, .path = (char *)path},
                   REAL(posix_spawn_file_actions_addopen)(fa, fd, path, oflag, mode));
}

int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *fa, const char *path)
{
    return rec_add(fa, (struct act){.kind = A_CHDIR, .path = (char *)path},
                   REAL(posix_spawn_file_actions_addchdir_np)(fa, path));
}

int posix_spawn_file_actions_addfchdir_np(posix_spawn_file_actions_t *fa, int fd)
{
    return rec_add(fa, (struct act){.kind = A_FCHDIR, .fd = fd}, REAL(posix_spawn_file_actions_addfchdir_np)(fa, fd));
}

int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *fa, int from)
{
    return rec_add(fa, (struct act){.kind = A_CLOSEFROM, .fd = from},
                   REAL(posix_spawn_file_actions_addclosefrom_np)(fa, from));
}

int posix_spawn_file_actions_addtcsetpgrp_np(posix_spawn_file_actions_t *fa, int fd)
{
    return rec_add(fa, (struct act){.kind = A_TCSETPGRP, .fd = fd},
                   REAL(posix_spawn_file_actions_addtcsetpgrp_np)(fa, fd));
}

/* Close the parent's copies of the Strata opens (after the spawn). */
void spawn_actions_done(struct spawn_fds *s)
{
    for (int i = 0; i < s->n; i++)
        close(s->fd[i]);
    s->n = 0;
    if (s->rebuilt)
        REAL(posix_spawn_file_actions_destroy)(&s->fa);
    s->rebuilt = 0;
}

static int add_real(posix_spawn_file_actions_t *t, const struct act *a)
{
    switch (a->kind) {
    case A_CLOSE: return REAL(posix_spawn_file_actions_addclose)(t, a->fd);
    case A_DUP2: return REAL(posix_spawn_file_actions_adddup2)(t, a->fd, a->fd2);
    case A_OPEN: return REAL(posix_spawn_file_actions_addopen)(t, a->fd, a->path, a->oflag, a->mode);
    case A_CHDIR: return REAL(posix_spawn_file_actions_addchdir_np)(t, a->path);
    case A_FCHDIR: return REAL(posix_spawn_file_actions_addfchdir_np)(t, a->fd);
    case A_CLOSEFROM: return REAL(posix_spawn_file_actions_addclosefrom_np)(t, a->fd);
    default: return REAL(posix_spawn_file_actions_addtcsetpgrp_np)(t, a->fd);
    }
}

/* Open a Strata path for the child: in this process, close-on-exec, never
 * on the number the child wants (a dup2 onto itself would keep the flag). */
static int open_for_child(const struct act *a, const char *pool_path, struct spawn_fds *s)
{
    (void)pool_path;
    int fd = open(a->path, a->oflag | O_CLOEXEC, a->mode);
    if (fd < 0)
        return errno;
    if (fd == a->fd) {
        int other = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        close(fd);
        if (other < 0)
            return errno;
        fd = other;
    }
    s->fd[s->n++] = fd;
    if (ofd_share_fd(fd) != 0)
        return errno;
    return 0;
}

/* 0 and *use set (fa itself, or s->fa rebuilt), or an errno for posix_spawn. */
int spawn_actions_prepare(const posix_spawn_file_actions_t *fa, struct spawn_fds *s,
                          const posix_spawn_file_actions_t **use)
{
    *use = fa;
    s->n = 0;
    s->rebuilt = 0;
    if (fa == NULL)
        return 0;
    pthread_mutex_lock(&rec_mu);
    struct rec *x = *rec_slot(fa);
    int rc = 0, strata_open = 0, moved = 0;
    char p[PATH_MAX];
    for (uint32_t i = 0; x && i < x->n && rc == 0; i++) {
        struct act *a = &x->a[i];
        int routed = a->path ? shim_route(a->path, p) : 0;
        if (routed < 0) {
            rc = errno;
        } else if (a->kind == A_CHDIR || a->kind == A_FCHDIR) {
            if (routed || (a->kind == A_FCHDIR && strata_is_fd(a->fd)))
                rc = ENOTSUP; /* the child's working directory cannot be in Strata */
            moved = 1;
        } else if (a->kind == A_OPEN && routed) {
            rc = moved && a->path[0] != '/' ? ENOTSUP : 0;
            strata_open = 1;
        } else if (a->kind == A_DUP2 && strata_is_fd(a->fd) && ofd_share_fd(a->fd) != 0) {
            rc = errno;
        }
    }
    if (x && x->lost && strata_open)
        rc = ENOMEM;
    if (rc == 0 && strata_open) {
        rc = REAL(posix_spawn_file_actions_init)(&s->fa);
        s->rebuilt = rc == 0;
        for (uint32_t i = 0; i < x->n && rc == 0; i++) {
            struct act *a = &x->a[i];
            if (a->kind == A_OPEN && shim_route(a->path, p) > 0) {
                if (s->n == SPAWN_MAX_OPENS)
                    rc = ENOMEM;
                else if ((rc = open_for_child(a, p, s)) == 0)
                    rc = REAL(posix_spawn_file_actions_adddup2)(&s->fa, s->fd[s->n - 1], a->fd);
            } else {
                rc = add_real(&s->fa, a);
            }
        }
        *use = &s->fa;
    }
    pthread_mutex_unlock(&rec_mu);
    if (rc != 0)
        spawn_actions_done(s);
    return rc;
}
