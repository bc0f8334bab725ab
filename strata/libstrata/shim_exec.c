/*
 * LD_PRELOAD shim: starting other programs and processes.  Before a process
 * or program can come to share our open Strata files, strata_before_spawn
 * digests this process's log (the other side sees every write so far) and
 * moves the OFDs it will inherit into shared memory (ofd.c), where its
 * libstrata adopts them.
 *
 * glibc's posix_spawn, system and popen start the child with internal calls
 * LD_PRELOAD cannot see, so the public entry points are interposed.  vfork
 * cannot be wrapped by a C function (the child would return through our
 * frame and then the parent again), so it is a tail call in assembly.
 */
#include "shim.h"
#include "strata_internal.h"

#include <alloca.h>
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern char **environ;

/* An explicit envp gets the Strata working directory (shim_cwd.c); the
 * calls that use environ get it from there.  On the stack: this may run in
 * a vfork child. */
#define WITH_CWD(envp) shim_exec_env((envp), alloca(shim_exec_env_room(envp) * sizeof(char *)))

int execve(const char *path, char *const argv[], char *const envp[])
{
    strata_before_spawn(1);
    return REAL(execve)(path, argv, WITH_CWD(envp));
}

int execv(const char *path, char *const argv[])
{
    strata_before_spawn(1);
    return REAL(execv)(path, argv);
}

int execvp(const char *file, char *const argv[])
{
    strata_before_spawn(1);
    return REAL(execvp)(file, argv);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    strata_before_spawn(1);
    return REAL(execvpe)(file, argv, WITH_CWD(envp));
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
    strata_before_spawn(1);
    return REAL(fexecve)(fd, argv, WITH_CWD(envp));
}

/* execl family: collect the variadic arguments (and envp for execle). */
#define COLLECT_ARGS(arg0, last, extra)                        \
    va_list ap;                                                \
    int n = 1;                                                 \
    va_start(ap, arg0);                                        \
    while (va_arg(ap, char *) != NULL)                         \
        n++;                                                   \
    va_end(ap);                                                \
    char **argv = alloca((size_t)(n + 1) * sizeof(char *));    \
    argv[0] = (char *)(arg0);                                  \
    va_start(ap, arg0);                                        \
    for (int i = 1; i <= n; i++)                               \
        argv[i] = va_arg(ap, char *);                          \
    extra;                                                     \
    va_end(ap)

int execl(const char *path, const char *arg, ...)
{
    COLLECT_ARGS(arg, n, (void)0);
    return execv(path, argv);
}

int execlp(const char *file, const char *arg, ...)
{
    COLLECT_ARGS(arg, n, (void)0);
    return execvp(file, argv);
}

int execle(const char *path, const char *arg, ...)
{
    char **envp;
    COLLECT_ARGS(arg, n, envp = va_arg(ap, char **));
    return execve(path, argv, envp);
}

typedef int spawn_fn(pid_t *, const char *, const posix_spawn_file_actions_t *,
                     const posix_spawnattr_t *, char *const[], char *const[]);

/* File actions that open Strata paths run in the parent (shim_spawn.c). */
static int spawn_with(spawn_fn *real, pid_t *pid, const char *path,
                      const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
                      char *const argv[], char *const envp[])
{
    struct spawn_fds s;
    int rc = spawn_actions_prepare(fa, &s, &fa);
    if (rc != 0)
        return rc;
    strata_before_spawn(1);
    rc = real(pid, path, fa, at, argv, WITH_CWD(envp));
    spawn_actions_done(&s);
    return rc;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    return spawn_with(REAL(posix_spawn), pid, path, fa, at, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    return spawn_with(REAL(posix_spawnp), pid, file, fa, at, argv, envp);
}

int system(const char *cmd)
{
    strata_before_spawn(1);
    return REAL(system)(cmd);
}

FILE *popen(const char *cmd, const char *mode)
{
    strata_before_spawn(1);
    return REAL(popen)(cmd, mode);
}

/* Called by the vfork stub: prepare, then hand back the real vfork. */
void *strata_vfork_prepare(void);
void *strata_vfork_prepare(void)
{
    static void *real;
    strata_before_spawn(0);
    if (real == NULL)
        real = dlsym(RTLD_NEXT, "vfork");
    return real;
}

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        "vfork:\n"
        "    sub $8, %rsp\n"                   /* keep the stack 16-byte aligned */
        "    call strata_vfork_prepare@PLT\n"
        "    add $8, %rsp\n"
        "    jmp *%rax\n"                      /* the real vfork returns to our caller */
        ".size vfork, .-vfork\n");
#else
/* Elsewhere vfork is fork, which POSIX allows (atfork prepares). */
pid_t vfork(void) { return fork(); }
#endif
