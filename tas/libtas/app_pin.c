/* libtas core: run the calling thread on the CPU of the fast-path core that
 * serves the app (tas_info.pin_apps, fastpath.pin_apps).  That core copies
 * received bytes into the app's buffers and sent ones out of them; on the
 * same CPU they are read from its own cache.  Left to the scheduler, an app
 * and the core serving it sit on different CPUs about a third of the time
 * on two CPUs, and each byte then crosses between them twice more. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "app_internal.h"

int tas_app_pin_thread(struct tas_app *a)
{
    if (!__atomic_load_n(&a->info->pin_apps, __ATOMIC_ACQUIRE))
        return -1;
    uint32_t owner = __atomic_load_n(&a->info->queue_owner[a->ctx[0].queue], __ATOMIC_SEQ_CST);
    if (owner >= a->ncores || owner >= TAS_FP_CORES_MAX)
        owner = 0;
    int cpu = __atomic_load_n(&a->info->core_cpu[owner], __ATOMIC_ACQUIRE);
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -ENOENT;
    cpu_set_t now;
    int r = pthread_getaffinity_np(pthread_self(), sizeof(now), &now);
    if (r != 0)
        return -r;
    /* Someone chose this thread's CPUs without that one: theirs to decide. */
    if (!CPU_ISSET(cpu, &now))
        return -EPERM;
    if (CPU_COUNT(&now) == 1)
        return cpu;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    r = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    if (r != 0)
        return -r;
    __atomic_add_fetch(a->ctr[RXC_PINNED], 1, __ATOMIC_RELAXED);
    return cpu;
}
