/*
 * TIME_WAIT pairs (include/tas/synfast.h).
 *
 * The fast path's table (tw_hash: pair -> the millisecond it began << 32 |
 * the old connection's rcv_nxt) answers the cores: a SYN above rcv_nxt
 * reuses a pair (RFC 6191), a connect may take one over a second old.
 *
 * The pairs the sweep leaves (connections closed in C, fp_syn_sweep.c) are
 * also kept here for the slow path, oldest first, with what an answer to a
 * segment for them needs (snd_nxt, the peer's MAC), and they expire here:
 * with servers that close first (HTTP/1.0, `Connection: close`) noting
 * each pair in Python was most of the slow path's work per connection.
 * The pairs the slow path closes itself it keeps and times itself
 * (tas/slowpath/tcp.py).  The record ring and its index are the slow-path
 * thread's only; tw_hash is shared with the cores.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_malloc.h>

#include "fp_internal.h"

/* Records of swept pairs: at most one live per pair in tw_hash, plus those
 * made stale by a reuse or a delete, which leave as they reach the head. */
#define TW_OWN_SLOTS (2 * TAS_FLOW_MAX)

struct fp_tw_rec {
    struct fp_flow_key key;
    uint64_t data;                  /* its tw_hash data when added */
    uint32_t snd_nxt;
    uint8_t peer_mac[6];
    uint8_t live;
};

struct fp_tw_own {
    struct fp_tw_rec *ring;         /* TW_OWN_SLOTS, oldest at head */
    uint32_t head, tail;            /* free-running */
    uint32_t live;
    struct rte_hash *idx;           /* pair -> ring slot of its live record */
};

static struct rte_hash *tw_hash_create(const char *name, bool shared)
{
    struct rte_hash_parameters hp = {
        .name = name,
        .entries = shared ? TAS_FLOW_MAX : TW_OWN_SLOTS,
        .key_len = sizeof(struct fp_flow_key),
        .hash_func = rte_jhash,
        .socket_id = (int)rte_socket_id(),
        /* the slow path adds and removes, cores remove pairs they reuse */
        .extra_flag = shared ? RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY : 0,
    };
    return rte_hash_create(&hp);
}

int fp_time_wait_init(struct tas_fp *fp)
{
    fp->tw_hash = tw_hash_create("tas_tw", true);
    fp->tw_own = rte_zmalloc("tas_tw_own", sizeof(*fp->tw_own), 0);
    if (fp->tw_hash == NULL || fp->tw_own == NULL)
        return -1;
    fp->tw_own->ring = rte_zmalloc("tas_tw_recs", sizeof(struct fp_tw_rec) * TW_OWN_SLOTS, 0);
    fp->tw_own->idx = tw_hash_create("tas_tw_own", false);
    return fp->tw_own->ring == NULL || fp->tw_own->idx == NULL ? -1 : 0;
}

void fp_time_wait_free(struct tas_fp *fp)
{
    rte_hash_free(fp->tw_hash);
    if (fp->tw_own != NULL) {
        rte_free(fp->tw_own->ring);
        rte_hash_free(fp->tw_own->idx);
    }
    rte_free(fp->tw_own);
}

/* Milliseconds of the TSC (the microsecond clock wraps in 71 minutes,
 * this one in 49 days). */
static uint32_t tw_clock_ms(struct tas_fp *fp)
{
    return (uint32_t)(rte_get_tsc_cycles() / (fp->tsc_per_us * 1000u));
}

static uint32_t tw_age_ms(struct tas_fp *fp, uint64_t data)
{
    return tw_clock_ms(fp) - (uint32_t)(data >> 32);
}

static int tw_put(struct tas_fp *fp, const struct fp_flow_key *k, uint32_t rcv_nxt,
                  uint64_t *data)
{
    /* rcv_nxt, and the millisecond it came (a connect's reuse waits a second) */
    *data = (uint64_t)tw_clock_ms(fp) << 32 | rcv_nxt;
    return rte_hash_add_key_data(fp->tw_hash, k, (void *)(uintptr_t)*data) == 0 ? 0 : -1;
}

int tas_fp_tw_add(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                  uint16_t peer_port, uint32_t rcv_nxt)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    uint64_t data;
    return tw_put(fp, &k, rcv_nxt, &data);
}

/* The live record of a pair, NULL if none. */
static struct fp_tw_rec *own_find(struct tas_fp *fp, const struct fp_flow_key *k)
{
    void *slot;
    if (rte_hash_lookup_data(fp->tw_own->idx, k, &slot) < 0)
        return NULL;
    return &fp->tw_own->ring[(uint32_t)(uintptr_t)slot % TW_OWN_SLOTS];
}

static void own_drop(struct tas_fp *fp, struct fp_tw_rec *r)
{
    rte_hash_del_key(fp->tw_own->idx, &r->key);
    r->live = 0;
    fp->tw_own->live--;
}

/* Is the record's pair still in tw_hash as it put it there (not reused by
 * a core since, nor entered again)? */
static bool own_current(struct tas_fp *fp, const struct fp_tw_rec *r)
{
    void *data;
    return rte_hash_lookup_data(fp->tw_hash, &r->key, &data) >= 0 &&
           (uint64_t)(uintptr_t)data == r->data;
}

int fp_tw_add_swept(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                    uint16_t peer_port, uint32_t snd_nxt, uint32_t rcv_nxt,
                    const uint8_t *peer_mac, bool *noted)
{
    struct fp_tw_own *o = fp->tw_own;
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    uint64_t data;
    *noted = false;
    if (tw_put(fp, &k, rcv_nxt, &data) != 0)
        return -1;
    if (o->tail - o->head == TW_OWN_SLOTS)
        return 0;                    /* no record: the slow path notes it */
    struct fp_tw_rec *old = own_find(fp, &k);
    if (old != NULL)
        own_drop(fp, old);
    uint32_t slot = o->tail++;
    struct fp_tw_rec *r = &o->ring[slot % TW_OWN_SLOTS];
    *r = (struct fp_tw_rec){.key = k, .data = data, .snd_nxt = snd_nxt, .live = 1};
    memcpy(r->peer_mac, peer_mac, 6);
    if (rte_hash_add_key_data(o->idx, &k, (void *)(uintptr_t)slot) != 0) {
        o->tail--;                   /* (a full bucket) the slow path notes it */
        return 0;
    }
    o->live++;
    *noted = true;
    return 0;
}

void tas_fp_tw_del(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                   uint16_t peer_port)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    struct fp_tw_rec *r = own_find(fp, &k);
    if (r != NULL)
        own_drop(fp, r);
    rte_hash_del_key(fp->tw_hash, &k);
}

int tas_fp_tw_get(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                  uint16_t peer_port, struct tas_tw_info *out)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    struct fp_tw_rec *r = own_find(fp, &k);
    if (r == NULL)
        return 0;
    if (!own_current(fp, r)) {       /* a core reused the pair */
        own_drop(fp, r);
        return 0;
    }
    out->age_ms = tw_age_ms(fp, r->data);
    out->snd_nxt = r->snd_nxt;
    out->rcv_nxt = (uint32_t)r->data;
    memcpy(out->peer_mac, r->peer_mac, 6);
    return 1;
}

uint32_t tas_fp_tw_expire(struct tas_fp *fp, uint32_t time_wait_ms)
{
    struct fp_tw_own *o = fp->tw_own;
    uint32_t n = 0;
    while (o->head != o->tail) {
        struct fp_tw_rec *r = &o->ring[o->head % TW_OWN_SLOTS];
        if (r->live) {
            if (tw_age_ms(fp, r->data) < time_wait_ms)
                break;
            /* (a core may reuse it between the look and the delete: then
             * the delete finds nothing) */
            if (own_current(fp, r))
                rte_hash_del_key(fp->tw_hash, &r->key);
            own_drop(fp, r);
            n++;
        }
        o->head++;
    }
    return n;
}

uint32_t tas_fp_tw_count(struct tas_fp *fp)
{
    return fp->tw_own->live;
}

uint32_t tas_fp_tw_list(struct tas_fp *fp, struct tas_tw_entry *out, uint32_t max)
{
    struct fp_tw_own *o = fp->tw_own;
    uint32_t n = 0;
    for (uint32_t s = o->head; s != o->tail && n < max; s++) {
        const struct fp_tw_rec *r = &o->ring[s % TW_OWN_SLOTS];
        if (!r->live || !own_current(fp, r))
            continue;
        out[n++] = (struct tas_tw_entry){.peer_ip = r->key.peer_ip,
                                         .local_port = r->key.local_port,
                                         .peer_port = r->key.peer_port,
                                         .age_ms = tw_age_ms(fp, r->data)};
    }
    return n;
}

enum fp_tw fp_syn_time_wait(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                            uint16_t peer_port, uint32_t seq, uint32_t *rcv_nxt)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    void *data;
    if (rte_hash_lookup_data(fp->tw_hash, &k, &data) < 0)
        return FP_TW_NONE;
    *rcv_nxt = (uint32_t)(uintptr_t)data;
    if (seq_diff(seq, *rcv_nxt) <= 0)
        return FP_TW_KEEP;
    /* A core that lost the race to another reusing it sees it gone. */
    return rte_hash_del_key(fp->tw_hash, &k) >= 0 ? FP_TW_REUSED : FP_TW_KEEP;
}

int fp_tw_take_for_connect(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                           uint16_t peer_port, uint32_t *rcv_nxt)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    void *data;
    if (rte_hash_lookup_data(fp->tw_hash, &k, &data) < 0)
        return 0;
    *rcv_nxt = (uint32_t)(uintptr_t)data;
    if (!fp->syn.tw_reuse || tw_age_ms(fp, (uint64_t)(uintptr_t)data) <= 1000u)
        return -1;                   /* (over a second old) */
    /* A core that lost the race to another reusing it sees it gone. */
    return rte_hash_del_key(fp->tw_hash, &k) >= 0 ? 1 : -1;
}
