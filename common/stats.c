/* Writer side of the shared stats page (include/kb/stats.h). */
#define _GNU_SOURCE
#include "kb/stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <stddef.h>

/* the header (magic, version, count, writer pid) ends where the counters begin */
#define STATS_HEAD offsetof(struct kb_stats_page, c)
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t sink_counter;

static void stats_path(char *buf, size_t len, const char *component,
                       const char *instance)
{
    snprintf(buf, len, "/dev/shm/kbstats.%s.%s", component, instance);
}

static void stats_init(struct kb_stats_page *p, const char *component)
{
    memset(p, 0, sizeof(*p));
    p->magic = KB_STATS_MAGIC;
    p->version = KB_STATS_VERSION;
    p->pid = (int32_t)getpid();
    strncpy(p->component, component, sizeof(p->component) - 1);
}

/*
 * /dev/shm is shared by every user, and the page has a predictable name.
 * So the page is made under a fresh random name (mkostemp: O_CREAT|O_EXCL,
 * which never follows a link), sized, given its mode, initialised, and only
 * then renamed over the public name: rename replaces whatever is there (a
 * stale page, or a link someone planted) without following it.  A user
 * other than root cannot replace another user's file in the sticky
 * directory: then there is no page (NULL, errno EPERM).
 */
struct kb_stats_page *kb_stats_create_mode(const char *component, const char *instance,
                                           unsigned mode, int gid)
{
    /* Pages of killed writers stay behind (nobody unlinks them): each new
     * writer removes its component's dead ones. */
    kb_stats_sweep(component);
    char path[256], tmp[256];
    stats_path(path, sizeof(path), component, instance);
    snprintf(tmp, sizeof(tmp), "/dev/shm/.kbstats.%s.%s.XXXXXX", component, instance);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return NULL;
    void *m = MAP_FAILED;
    if (ftruncate(fd, KB_STATS_PAGE_SIZE) != 0 || fchmod(fd, (mode_t)(mode & 0777)) != 0 ||
        (gid >= 0 && fchown(fd, (uid_t)-1, (gid_t)gid) != 0))
        goto fail;
    m = mmap(NULL, KB_STATS_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        goto fail;
    stats_init(m, component);
    if (rename(tmp, path) != 0)
        goto fail;
    close(fd);
    return m;
fail:;
    int e = errno;
    if (m != MAP_FAILED)
        munmap(m, KB_STATS_PAGE_SIZE);
    unlink(tmp);
    close(fd);
    errno = e;
    return NULL;
}

struct kb_stats_page *kb_stats_create(const char *component, const char *instance)
{
    return kb_stats_create_mode(component, instance, 0600, -1);
}

struct kb_stats_page *kb_stats_anon(const char *component)
{
    void *m = mmap(NULL, KB_STATS_PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    stats_init(m, component);
    return m;
}

uint64_t *kb_stats_counter(struct kb_stats_page *p, const char *name)
{
    if (p == NULL)
        return &sink_counter;
    pthread_mutex_lock(&register_lock);
    uint32_t n = __atomic_load_n(&p->ncounters, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++) {
        if (strncmp(p->c[i].name, name, KB_STATS_NAME_LEN) == 0) {
            pthread_mutex_unlock(&register_lock);
            return &p->c[i].value;
        }
    }
    uint64_t *v = &sink_counter;
    if (n < KB_STATS_MAX) {
        strncpy(p->c[n].name, name, KB_STATS_NAME_LEN - 1);
        p->c[n].value = 0;
        __atomic_store_n(&p->ncounters, n + 1, __ATOMIC_RELEASE);
        v = &p->c[n].value;
    } else {
        /* a full page would drop this counter without a trace: say so */
        fprintf(stderr, "kbstats: %s page full (%d counters): counter %s not shown\n",
                p->component, KB_STATS_MAX, name);
    }
    pthread_mutex_unlock(&register_lock);
    return v;
}

/* Remove the page's name only if it is still our page (same writer pid):
 * another process may have published its own page under it since. */
static void unlink_if_ours(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    struct kb_stats_page head;
    ssize_t n = read(fd, &head, STATS_HEAD);
    close(fd);
    if (n == (ssize_t)STATS_HEAD && head.magic == KB_STATS_MAGIC &&
        head.pid == (int32_t)getpid())
        unlink(path);
}

/* A writer killed between mkostemp and rename leaves its temporary name
 * behind (the crash tests kill writers at any instruction).  A live creator
 * holds that name for microseconds, so one older than a minute is litter. */
#define STATS_TMP_MAX_AGE_S 60

static void sweep_stale_tmp(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == geteuid() && time(NULL) - st.st_mtime > STATS_TMP_MAX_AGE_S)
        unlinkat(dfd, name, 0);
}

void kb_stats_sweep(const char *component)
{
    char prefix[64], tmp_prefix[72];
    int plen = snprintf(prefix, sizeof(prefix), "kbstats.%s.", component);
    int tlen = snprintf(tmp_prefix, sizeof(tmp_prefix), ".%s", prefix);
    DIR *d = opendir("/dev/shm");
    if (d == NULL || plen <= 0 || (size_t)plen >= sizeof(prefix)) {
        if (d != NULL)
            closedir(d);
        return;
    }
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, tmp_prefix, (size_t)tlen) == 0) {
            sweep_stale_tmp(dfd, e->d_name);
            continue;
        }
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0)
            continue;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct kb_stats_page head;
        ssize_t n = read(fd, &head, STATS_HEAD);
        close(fd);
        if (n == (ssize_t)STATS_HEAD && head.magic == KB_STATS_MAGIC && head.pid > 0 &&
            head.pid != (int32_t)getpid() && kill(head.pid, 0) != 0 && errno == ESRCH)
            unlinkat(dfd, e->d_name, 0);
    }
    closedir(d);
}

void kb_stats_close(struct kb_stats_page *p, const char *component,
                    const char *instance, int unlink_file)
{
    if (p != NULL)
        munmap(p, KB_STATS_PAGE_SIZE);
    if (unlink_file && component != NULL && instance != NULL) {
        char path[256];
        stats_path(path, sizeof(path), component, instance);
        unlink_if_ours(path);
    }
}
