/*
 * The neighbour table connects take a peer's MAC from (fp_tcp_connect.c):
 * the slow path's ARP cache writes what it learns, fast-path cores read.
 * Open addressing over a small fixed table; each entry has a sequence
 * counter (odd while the slow path writes it), so a reader never takes
 * half an update.  A miss only sends the connect the slow way.
 */
#include <rte_jhash.h>
#include <rte_malloc.h>

#include "fp_internal.h"

#define NEIGH_SLOTS 1024        /* a power of two */
#define NEIGH_PROBE 8

struct fp_neigh_ent {
    uint32_t seq;               /* odd: being written */
    uint32_t ip;                /* 0: free */
    uint8_t mac[6];
};

struct fp_neigh {
    struct fp_neigh_ent ent[NEIGH_SLOTS];
};

int fp_neigh_init(struct tas_fp *fp)
{
    fp->neigh = rte_zmalloc("tas_neigh", sizeof(*fp->neigh), RTE_CACHE_LINE_SIZE);
    return fp->neigh == NULL ? -1 : 0;
}

void fp_neigh_free(struct tas_fp *fp)
{
    rte_free(fp->neigh);
    fp->neigh = NULL;
}

static uint32_t home(uint32_t ip)
{
    return rte_jhash_1word(ip, 0);
}

static void put(struct fp_neigh_ent *e, uint32_t ip, const uint8_t *mac)
{
    __atomic_fetch_add(&e->seq, 1, __ATOMIC_ACQ_REL);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&e->ip, ip, __ATOMIC_RELAXED);
    if (mac != NULL)
        for (int i = 0; i < 6; i++)
            __atomic_store_n(&e->mac[i], mac[i], __ATOMIC_RELAXED);
    __atomic_fetch_add(&e->seq, 1, __ATOMIC_RELEASE);
}

/* Slow-path thread only (the one writer). */
void tas_fp_neigh_set(struct tas_fp *fp, uint32_t ip, const uint8_t *mac)
{
    if (ip == 0)
        return;
    struct fp_neigh_ent *free_ent = NULL;
    for (uint32_t i = 0; i < NEIGH_PROBE; i++) {
        struct fp_neigh_ent *e = &fp->neigh->ent[(home(ip) + i) & (NEIGH_SLOTS - 1)];
        if (e->ip == ip) {
            if (memcmp(e->mac, mac, 6) != 0)
                put(e, ip, mac);
            return;
        }
        if (e->ip == 0 && free_ent == NULL)
            free_ent = e;
    }
    if (free_ent == NULL)       /* full around its home: replace the first */
        free_ent = &fp->neigh->ent[home(ip) & (NEIGH_SLOTS - 1)];
    put(free_ent, ip, mac);
}

void tas_fp_neigh_del(struct tas_fp *fp, uint32_t ip)
{
    for (uint32_t i = 0; i < NEIGH_PROBE; i++) {
        struct fp_neigh_ent *e = &fp->neigh->ent[(home(ip) + i) & (NEIGH_SLOTS - 1)];
        if (e->ip == ip && ip != 0)
            put(e, 0, NULL);
    }
}

bool fp_neigh_get(struct tas_fp *fp, uint32_t ip, uint8_t mac[6])
{
    for (uint32_t i = 0; i < NEIGH_PROBE; i++) {
        const struct fp_neigh_ent *e = &fp->neigh->ent[(home(ip) + i) & (NEIGH_SLOTS - 1)];
        for (int tries = 0; tries < 4; tries++) {
            uint32_t s0 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
            if (s0 & 1)
                continue;
            uint32_t got = __atomic_load_n(&e->ip, __ATOMIC_RELAXED);
            for (int k = 0; k < 6; k++)
                mac[k] = __atomic_load_n(&e->mac[k], __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != s0)
                continue;
            if (got == ip)
                return true;
            break;
        }
    }
    return false;
}
