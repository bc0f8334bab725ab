/*
 * How far apart the machine's first two CPUs are: the round trip of a cache
 * line bounced between a thread on each (best of 200 batches of 1,000, so a
 * preempted batch does not count), in nanoseconds, printed as one number.
 *
 * bench/tas_bulk.py runs it around every measurement.  On the test VMs the
 * hypervisor places the two virtual CPUs sometimes on one die (about 100 ns)
 * and sometimes on two (about 550 ns), and moves them while we run: every
 * byte TAS-to-TAS moves crosses between the CPUs once, and on two dies that
 * costs half the throughput (Linux over a veth about a fifth).  Knowing
 * which placement a figure was taken on is the only way to compare them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define BATCH 1000
#define BATCHES 200

static _Alignas(64) volatile uint64_t ping;
static _Alignas(64) volatile uint64_t pong;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static int cpus[2];
static int responder_pinned;

/* Answers even if it could not be pinned (main says so, never hangs). */
static void *responder(void *arg)
{
    (void)arg;
    responder_pinned = pin(cpus[1]) == 0;
    for (uint64_t i = 1; i <= (uint64_t)BATCH * BATCHES; i++) {
        while (ping != i)
            ;
        pong = i;
    }
    return NULL;
}

int main(void)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        perror("sched_getaffinity");
        return 1;
    }
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &allowed))
            cpus[n++] = c;
    if (n < 2) {
        fprintf(stderr, "xcpu_probe: needs two CPUs\n");
        return 1;
    }
    pthread_t t;
    if (pin(cpus[0]) != 0 || pthread_create(&t, NULL, responder, NULL) != 0) {
        fprintf(stderr, "xcpu_probe: cannot pin or start the responder\n");
        return 1;
    }
    double best = 1e18;
    uint64_t i = 1;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int k = 0; k < BATCH; k++, i++) {
            ping = i;
            while (pong != i)
                ;
        }
        double per = (now_ns() - t0) / BATCH;
        if (per < best)
            best = per;
    }
    pthread_join(t, NULL);
    if (!responder_pinned) {
        fprintf(stderr, "xcpu_probe: cannot pin the responder to CPU %d\n", cpus[1]);
        return 1;
    }
    printf("%.0f\n", best);
    return 0;
}
