/* epoll over a mix of TAS and kernel fds.  Kernel fds live in the kernel's
 * epoll set; TAS fds are kept in a side list per epoll fd.  Level-triggered
 * by default; EPOLLONESHOT disarms after one report; EPOLLET reports a ready
 * socket once, then again only after a new event of a kind it waits for
 * (data, FIN, freed TX space...: lt_activity), as Linux's wake-ups do. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "interpose.h"

struct ep_entry {
    int fd;
    uint64_t gen;              /* the socket's, so a reused fd number is stale */
    uint32_t events;
    epoll_data_t data;
    uint64_t seen;             /* EPOLLET: lt_activity at the last report */
    int reported;              /* EPOLLET: seen is valid */
};

struct ep_set {
    int n, cap;
    struct ep_entry *e;
};

static struct ep_set *sets[LT_MAX_FD];

/* Kernel fds added to each epoll set through us, less those deleted: an
 * upper bound (a closed fd leaves the kernel's set silently), so at 0 the
 * kernel's set is empty and a wait that found TAS events skips its
 * epoll_wait(0) system call.  An epoll fd inherited over exec with kernel
 * entries already in it is not seen: it counts as empty until one is added. */
static int kernel_fds[LT_MAX_FD];
/* Kernel twins of TAS listeners in each set (listen_kernel.c), counted
 * apart: a set whose only kernel fds they are is asked when no TAS event
 * came, and every TWIN_TURN-th time besides, so that a server busy with TAS
 * connections still takes its host's (a few a second, against thousands). */
static int twin_fds[LT_MAX_FD];
static unsigned twin_turn[LT_MAX_FD];
#define TWIN_TURN 64

static void count_kernel_fd(int *counts, int epfd, int op, int r)
{
    if (r != 0 || epfd < 0 || epfd >= LT_MAX_FD)
        return;
    if (op == EPOLL_CTL_ADD)
        __atomic_add_fetch(&counts[epfd], 1, __ATOMIC_RELAXED);
    else if (op == EPOLL_CTL_DEL && __atomic_load_n(&counts[epfd], __ATOMIC_RELAXED) > 0)
        __atomic_sub_fetch(&counts[epfd], 1, __ATOMIC_RELAXED);
}

static int kernel_wait_now(int epfd, struct epoll_event *out, int max, int found_tas)
{
    if (max <= 0)
        return 0;
    if (__atomic_load_n(&kernel_fds[epfd], __ATOMIC_RELAXED) == 0 &&
        (__atomic_load_n(&twin_fds[epfd], __ATOMIC_RELAXED) == 0 ||
         (found_tas && ++twin_turn[epfd] % TWIN_TURN != 0)))
        return 0;
    return REAL(epoll_wait)(epfd, out, max, 0);
}

void lt_epoll_closed(int fd)
{
    if (fd >= 0 && fd < LT_MAX_FD) {
        __atomic_store_n(&kernel_fds[fd], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&twin_fds[fd], 0, __ATOMIC_RELAXED);
    }
    if (fd < 0 || fd >= LT_MAX_FD || __atomic_load_n(&sets[fd], __ATOMIC_ACQUIRE) == NULL)
        return;
    lt_lock();
    struct ep_set *set = sets[fd];
    __atomic_store_n(&sets[fd], NULL, __ATOMIC_RELEASE);
    lt_unlock();
    if (set != NULL) {
        free(set->e);
        free(set);
    }
}

static int entry_live(const struct ep_entry *e)
{
    struct lt_sock *s = lt_sock_of(e->fd);
    return s != NULL && s->gen == e->gen;
}

/* Drop entry i, whose socket is gone.  If it became a kernel socket under
 * the same number (a connect outside TAS's subnet after the app had added
 * it: sock_to_kernel.c), the kernel's set takes it over with the same
 * events and data. */
static void drop_entry(int epfd, struct ep_set *set, int i)
{
    struct ep_entry *e = &set->e[i];
    if (e->gen != 0 && lt_fd_moved_gen(e->fd) == e->gen) {
        struct epoll_event ev = {.events = e->events, .data = e->data};
        count_kernel_fd(kernel_fds, epfd, EPOLL_CTL_ADD,
                        REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, e->fd, &ev));
    }
    set->e[i] = set->e[--set->n];
}

/* Index of fd's live entry, -1 if none; drops stale entries on the way. */
static int find_entry(int epfd, struct ep_set *set, int fd)
{
    for (int i = 0; i < set->n; i++) {
        if (!entry_live(&set->e[i])) {
            drop_entry(epfd, set, i--);
            continue;
        }
        if (set->e[i].fd == fd)
            return i;
    }
    return -1;
}

static int ctl_locked(int epfd, int op, int fd, struct lt_sock *s, struct epoll_event *ev)
{
    struct ep_set *set = sets[epfd];
    if (set == NULL) {
        set = calloc(1, sizeof(*set));
        if (set == NULL)
            return -ENOMEM;
        __atomic_store_n(&sets[epfd], set, __ATOMIC_RELEASE);
    }
    int i = find_entry(epfd, set, fd);
    if (op == EPOLL_CTL_ADD) {
        if (i >= 0)
            return -EEXIST;
        if (set->n == set->cap) {
            int cap = set->cap ? 2 * set->cap : 16;
            struct ep_entry *e = realloc(set->e, sizeof(*e) * (size_t)cap);
            if (e == NULL)
                return -ENOMEM;
            set->e = e;
            set->cap = cap;
        }
        i = set->n++;
        set->e[i].fd = fd;
        set->e[i].gen = s->gen;
    } else if (i < 0) {
        return -ENOENT;
    }
    if (op == EPOLL_CTL_DEL) {
        set->e[i] = set->e[--set->n];
        return 0;
    }
    if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD)
        return -EINVAL;
    set->e[i].events = ev->events;
    set->e[i].data = ev->data;
    set->e[i].reported = 0;    /* ADD and MOD report a ready socket at once */
    return 0;
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL) {
        int r = REAL(epoll_ctl)(epfd, op, fd, ev);
        count_kernel_fd(kernel_fds, epfd, op, r);
        return r;
    }
    if (epfd < 0 || epfd >= LT_MAX_FD || epfd == fd || (op != EPOLL_CTL_DEL && ev == NULL)) {
        errno = EINVAL;
        return -1;
    }
    lt_lock();
    int r = ctl_locked(epfd, op, fd, s, ev);
    if (r == 0 && s->kind == LT_LISTEN && s->kernel_fd >= 0) {
        /* the kernel twin's connections wake the same entry: the kernel's
         * set reports them with the listener's data (listen_kernel.c) */
        int kr = REAL(epoll_ctl)(epfd, op, s->kernel_fd, ev);
        count_kernel_fd(twin_fds, epfd, op, kr);
    }
    lt_unlock();
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return 0;
}

static int tas_events(int epfd, struct ep_set *set, struct epoll_event *out, int max)
{
    int cnt = 0;
    for (int i = 0; i < set->n && cnt < max; i++) {
        if (!entry_live(&set->e[i])) {
            drop_entry(epfd, set, i--);
            continue;
        }
        struct ep_entry *en = &set->e[i];
        struct lt_sock *s = lt_sock_of(en->fd);
        uint32_t want = en->events | EPOLLERR | EPOLLHUP;
        uint32_t got = (uint32_t)(uint16_t)lt_ready(s) & want;
        if (got == 0 || !(en->events & ~(uint32_t)(EPOLLET | EPOLLONESHOT)))
            continue;
        if (en->events & EPOLLET) {
            /* Resets and connect outcomes (ERR/HUP) count as both kinds. */
            uint64_t act = lt_activity(s, en->events);
            if (en->reported && act == en->seen)
                continue;
            en->seen = act;
            en->reported = 1;
        }
        out[cnt].events = got;
        out[cnt++].data = set->e[i].data;
        if (set->e[i].events & EPOLLONESHOT)
            set->e[i].events = 0;
    }
    return cnt;
}

static int tas_epoll_wait(int epfd, struct epoll_event *out, int max, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : lt_now_ns() + (int64_t)timeout_ms * 1000000;
    int cnt, slept_out = 0;
    lt_lock();
    for (;;) {
        lt_progress();
        struct ep_set *set = sets[epfd];
        cnt = set != NULL ? tas_events(epfd, set, out, max) : 0;
        if (cnt > 0 && slept_out)      /* ready, and nobody woke us for it */
            tas_app_count(lt_app, TAS_SHIM_WAKEUPS_LATE, 1);
        int left = lt_ms_left(deadline);
        if (cnt > 0 || left == 0) {
            int kr = kernel_wait_now(epfd, out + cnt, max - cnt, cnt > 0);
            cnt += kr > 0 ? kr : 0;
            if (cnt == 0 && kr < 0)
                cnt = -1;
            break;
        }
        struct pollfd k = {.fd = epfd, .events = POLLIN};
        int kr = lt_wait(&k, 1, left);
        slept_out = kr == 0 && lt_wait_slept_out();
        if (kr < 0) {
            cnt = -1;
            break;
        }
        if (kr > 0)
            deadline = lt_now_ns();    /* collect without sleeping again */
    }
    lt_unlock();
    return cnt;
}

static int has_tas_entries(int epfd)
{
    if (epfd < 0 || epfd >= LT_MAX_FD)
        return 0;
    struct ep_set *set = __atomic_load_n(&sets[epfd], __ATOMIC_ACQUIRE);
    return set != NULL && set->n > 0;
}

int epoll_wait(int epfd, struct epoll_event *out, int max, int timeout_ms)
{
    if (!has_tas_entries(epfd) || max <= 0)
        return REAL(epoll_wait)(epfd, out, max, timeout_ms);
    return tas_epoll_wait(epfd, out, max, timeout_ms);
}

struct epoll_args {
    int epfd;
    struct epoll_event *out;
    int max, timeout_ms;
};

static int epoll_call(void *arg)
{
    struct epoll_args *a = arg;
    return tas_epoll_wait(a->epfd, a->out, a->max, a->timeout_ms);
}

int epoll_pwait(int epfd, struct epoll_event *out, int max, int timeout_ms,
                const sigset_t *mask)
{
    if (!has_tas_entries(epfd) || max <= 0)
        return REAL(epoll_pwait)(epfd, out, max, timeout_ms, mask);
    struct epoll_args a = {epfd, out, max, timeout_ms};
    return lt_with_sigmask(mask, epoll_call, &a);
}
