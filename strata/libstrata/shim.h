/* Shared helpers of the LD_PRELOAD shim (shim_*.c). */
#ifndef STRATA_SHIM_H
#define STRATA_SHIM_H

/* The shim defines both open and open64 etc.: it must see the plain names. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Resolve the next definition of a libc function once (thread-safe enough:
 * every thread computes the same pointer). */
#define REAL(name)                                                     \
    ({                                                                 \
        static __typeof__(&name) real_##name;                          \
        if (real_##name == NULL)                                       \
            real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name);  \
        real_##name;                                                   \
    })

/* shim_route.c: map an application path to a pool path ("/..."); 0 if not Strata's.
 * route_at also resolves paths relative to a Strata directory fd. */
int shim_route(const char *path, char out[PATH_MAX]);
int shim_route_at(int dirfd, const char *path, char out[PATH_MAX]);
/* The same for calls that follow links (open, fopen, stat): also /dev/stdin,
 * /dev/fd/N, /proc/self/fd/N ... of a Strata fd name its file. */
int shim_route_follow(const char *path, char out[PATH_MAX]);
int shim_route_at_follow(int dirfd, const char *path, char out[PATH_MAX]);

const char *shim_prefix(void); /* the mount prefix, e.g. "/strata" */
/* The pool path of the working directory while it is inside Strata, else
 * NULL (shim_cwd_path: "" outside; shim_cwd.c's chdir family sets it). */
extern char shim_cwd_path[PATH_MAX];
extern uint32_t shim_cwd_ino, shim_cwd_gen; /* the directory entered (0: noted at the next shim_vcwd) */
extern void (*shim_cwd_moved)(void);        /* called when shim_vcwd remade the path */
const char *shim_vcwd(void);

/* shim_cwd.c: the environment an exec'd program gets (it carries the
 * working directory to the next program). */
void shim_normalise(const char *in, char out[PATH_MAX]); /* "." and ".." lexically */
size_t shim_exec_env_room(char *const envp[]);           /* entries for out */
char **shim_exec_env(char *const envp[], char **out);

/* Body of a path call: route path with router (shim_route, or
 * shim_route_follow for calls that follow links); the Strata call sees the
 * pool path as `sp`; a path outside Strata goes to the real call. */
#define ROUTE_WITH(router, path, call_strata, call_real) \
    do {                                                 \
        char p_[PATH_MAX];                               \
        int r_ = router(path, p_);                       \
        if (r_ < 0)                                      \
            return -1;                                   \
        const char *sp = p_;                             \
        (void)sp;                                        \
        return r_ ? (call_strata) : (call_real);         \
    } while (0)
#define ROUTE_OR(path, call_strata, call_real) ROUTE_WITH(shim_route, path, call_strata, call_real)
#define ROUTE_FOLLOW_OR(path, call_strata, call_real) \
    ROUTE_WITH(shim_route_follow, path, call_strata, call_real)

/* shim_stdio.c: route stdin/stdout/stderr through Strata once fd 0/1/2 is a
 * Strata fd (at_start: inherited over exec). */
void shim_std_redirect(int fd, int at_start);

/* shim_spawn.c: posix_spawn file actions that open Strata paths are done
 * in the parent; the child gets dup2s of the results. */
#include <spawn.h>
#define SPAWN_MAX_OPENS 16
struct spawn_fds {
    posix_spawn_file_actions_t fa; /* the rebuilt list */
    int rebuilt, n;
    int fd[SPAWN_MAX_OPENS];       /* the parent's copies, closed after the spawn */
};
int spawn_actions_prepare(const posix_spawn_file_actions_t *fa, struct spawn_fds *s,
                          const posix_spawn_file_actions_t **use);
void spawn_actions_done(struct spawn_fds *s);

/* In a child that shares our memory without having run the atfork handlers
 * (vfork, clone): our tables are the parent's, so fd operations there must
 * go straight to the kernel (the fds are already shared: see ofd.c). */
#define SHIM_FOREIGN_CHILD() (G.base != NULL && (pid_t)syscall(SYS_getpid) != G.pid)

#endif
