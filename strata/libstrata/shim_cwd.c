/*
 * The working directory inside Strata.  The kernel cannot chdir into the
 * mount prefix, so the shim keeps the directory (shim_cwd_path, a normalised pool
 * path) and resolves relative paths against it (shim_route).  Meanwhile the
 * kernel's working directory is a private directory removed right after
 * entering it: a relative path that reaches the kernel anyway (a call the
 * shim does not route, a program running without libstrata) fails with
 * ENOENT instead of landing in the directory the program started from.
 *
 * Across exec the directory travels in the environment as
 * STRATA_CWD=<dev>:<ino>:<pool path>, dev:ino naming that removed directory;
 * the next program takes the directory over only if its kernel working
 * directory is still that one (a program in between may have moved).
 */
#include "shim.h"
#include "strata_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CWD_VAR "STRATA_CWD"

static char env_entry[PATH_MAX + 64];         /* CWD_VAR=dev:ino:path, for exec */
static dev_t anchor_dev;
static ino_t anchor_ino;


/* Lexical normalisation ("." and ".." and repeated slashes): exact in
 * Strata, which has no symbolic links. */
void shim_normalise(const char *in, char out[PATH_MAX])
{
    size_t n = 0; /* out[0..n) holds "/a/b"; empty means the root */
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
        } else if (n + 1 + len < PATH_MAX) {
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p = e;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = 0;
}

static void env_update(void)
{
    if (shim_cwd_path[0]) {
        snprintf(env_entry, sizeof(env_entry), CWD_VAR "=%lu:%lu:%s", (unsigned long)anchor_dev,
                 (unsigned long)anchor_ino, shim_cwd_path);
        setenv(CWD_VAR, env_entry + sizeof(CWD_VAR), 1);
    } else {
        env_entry[0] = 0;
        unsetenv(CWD_VAR);
    }
}

/* Make the kernel's working directory a removed private directory. */
static int enter_anchor(void)
{
    struct stat st;
    if (shim_cwd_path[0] && REAL(stat)(".", &st) == 0 && st.st_dev == anchor_dev && st.st_ino == anchor_ino)
        return 0;
    char dir[] = "/tmp/.strata-cwd-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return -1;
    int rc = REAL(chdir)(dir);
    if (rc == 0)
        rc = REAL(stat)(".", &st);
    REAL(rmdir)(dir);
    if (rc != 0)
        return -1;
    anchor_dev = st.st_dev;
    anchor_ino = st.st_ino;
    return 0;
}

static int enter(const char *pool_path)
{
    struct stat st;
    if (strata_stat(pool_path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if (strata_access(pool_path, X_OK) != 0)
        return -1;
    char norm[PATH_MAX]; /* the physical directory, links resolved, as Linux's getcwd */
    if (strata_realpath_pool(pool_path, norm) != 0)
        return -1;
    if (enter_anchor() != 0)
        return -1;
    memcpy(shim_cwd_path, norm, strlen(norm) + 1);
    shim_cwd_ino = 0;
    shim_cwd_moved = env_update;
    shim_vcwd(); /* notes the directory's inode */
    env_update();
    return 0;
}


static void leave(void)
{
    if (shim_cwd_path[0]) {
        shim_cwd_path[0] = 0;
        env_update();
    }
}

int chdir(const char *path)
{
    char p[PATH_MAX];
    int r = shim_route(path, p);
    if (r < 0)
        return -1;
    if (r)
        return enter(p);
    int rc = REAL(chdir)(path);
    if (rc == 0)
        leave();
    return rc;
}

int fchdir(int fd)
{
    const char *p = strata_fd_path(fd);
    if (p != NULL)
        return enter(p);
    int rc = REAL(fchdir)(fd);
    if (rc == 0)
        leave();
    return rc;
}

char *getcwd(char *buf, size_t size)
{
    const char *cwd = shim_vcwd();
    if (cwd == NULL)
        return REAL(getcwd)(buf, size);
    if (cwd == strata_removed_dir) {
        errno = ENOENT; /* as Linux, for a removed working directory */
        return NULL;
    }
    char full[PATH_MAX];
    int n = snprintf(full, sizeof(full), "%s%s", shim_prefix(), strcmp(cwd, "/") ? cwd : "");
    if (buf == NULL)
        return strdup(full);
    if ((size_t)n + 1 > size) {
        errno = ERANGE;
        return NULL;
    }
    memcpy(buf, full, (size_t)n + 1);
    return buf;
}

char *get_current_dir_name(void)
{
    return shim_cwd_path[0] ? getcwd(NULL, 0) : REAL(get_current_dir_name)();
}

/* envp for an exec: envp without CWD_VAR, plus ours while inside Strata.
 * out has room for count(envp) + 2 entries (no allocation: this may run in
 * a vfork child). */
size_t shim_exec_env_room(char *const envp[])
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    return n + 2;
}

char **shim_exec_env(char *const envp[], char **out)
{
    size_t k = 0;
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], CWD_VAR "=", sizeof(CWD_VAR)) != 0)
            out[k++] = envp[i];
    if (env_entry[0])
        out[k++] = env_entry;
    out[k] = NULL;
    return out;
}

/* After exec: take the directory over if the kernel's is still its anchor. */
__attribute__((constructor(103))) static void cwd_init(void)
{
    const char *s = getenv(CWD_VAR);
    if (s == NULL)
        return;
    unsigned long dev, ino;
    int used = 0;
    struct stat st;
    if (sscanf(s, "%lu:%lu:%n", &dev, &ino, &used) == 2 && used > 0 && s[used] == '/' &&
        REAL(stat)(".", &st) == 0 && st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino &&
        strlen(s + used) < sizeof(shim_cwd_path)) {
        anchor_dev = st.st_dev;
        anchor_ino = st.st_ino;
        shim_normalise(s + used, shim_cwd_path);
    }
    shim_cwd_moved = env_update;
    env_update();
}
