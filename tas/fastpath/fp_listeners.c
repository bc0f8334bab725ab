/*
 * Listeners as the fast path sees them (include/tas/synfast.h): which port,
 * which app context, whether the app takes connections handed over at the
 * SYN, and a small pool of flow buffers the slow path provisioned for them.
 * Also the 4-tuples the slow path keeps for itself (connections reset but
 * not yet closed by their app; TIME_WAIT pairs a full table could not take),
 * the TIME_WAIT table (pair -> the old connection's rcv_nxt), and the ring
 * of connections opened here that the slow path collects.
 */
#include <string.h>

#include <rte_jhash.h>
#include <rte_malloc.h>

#include "fp_internal.h"

/* Counters before tas_fp_syn_stats gives them a page. */
static uint64_t sink;

int fp_listeners_init(struct tas_fp *fp)
{
    fp->ctr.syn_fast = fp->ctr.syn_kicks = &sink;
    for (int i = 0; i < TAS_SYN_FB_N; i++)
        fp->ctr.syn_fallback[i] = &sink;
    fp->listeners = rte_zmalloc("tas_listeners",
                                sizeof(struct fp_listener) * TAS_SYN_MAX_LISTENERS,
                                RTE_CACHE_LINE_SIZE);
    /* Never full: an entry waits for each flow opened here and not yet
     * collected, and there are at most TAS_FLOW_MAX flows. */
    fp->syn_opened = rte_ring_create_elem("tas_synopen", sizeof(struct tas_syn_opened),
                                          TAS_FLOW_MAX, (int)rte_socket_id(),
                                          RING_F_SC_DEQ | RING_F_EXACT_SZ);
    struct rte_hash_parameters hp = {
        .name = "tas_tw",
        .entries = TAS_FLOW_MAX,
        .key_len = sizeof(struct fp_flow_key),
        .hash_func = rte_jhash,
        .socket_id = (int)rte_socket_id(),
        /* the slow path adds and removes, cores remove pairs they reuse */
        .extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY,
    };
    fp->tw_hash = rte_hash_create(&hp);
    if (fp->listeners == NULL || fp->syn_opened == NULL || fp->tw_hash == NULL)
        return -1;
    for (int i = 0; i < TAS_SYN_MAX_LISTENERS; i++)
        rte_spinlock_init(&fp->listeners[i].lock);
    return 0;
}

void fp_listeners_free(struct tas_fp *fp)
{
    rte_free(fp->listeners);
    rte_ring_free(fp->syn_opened);
    rte_hash_free(fp->tw_hash);
}

void tas_fp_syn_stats(struct tas_fp *fp, struct kb_stats_page *page)
{
    static const char *const why[TAS_SYN_FB_N] = {
        "not_handoff", "pool_empty", "backlog", "odd", "no_taker", "held", "queue_full",
        "flow_table"};
    fp->ctr.syn_fast = kb_stats_counter(page, "syn_fast");
    fp->ctr.syn_kicks = kb_stats_counter(page, "syn_pool_kicks");
    fp_stats_by_reason(page, "syn_fallback_", why, TAS_SYN_FB_N, fp->ctr.syn_fallback);
}

void fp_stats_by_reason(struct kb_stats_page *page, const char *prefix,
                        const char *const *names, int n, uint64_t **out)
{
    for (int i = 0; i < n; i++) {
        char name[KB_STATS_NAME_LEN];
        snprintf(name, sizeof(name), "%s%s", prefix, names[i]);
        out[i] = kb_stats_counter(page, name);
    }
}

void fp_listener_took(struct tas_fp *fp, struct fp_listener *l, struct tas_syn_opened *rec,
                      const uint8_t *peer_mac)
{
    memcpy(rec->peer_mac, peer_mac, sizeof(rec->peer_mac));
    /* The ring has room for every flow (fp_listeners_init). */
    if (rte_ring_mp_enqueue_elem(fp->syn_opened, rec, sizeof(*rec)) != 0)
        kb_stats_add(fp->ctr.exc_ring_full, 1);
    l->npool--;
    l->opened++;
}

void tas_fp_syn_configure(struct tas_fp *fp, const struct tas_syn_conf *conf)
{
    fp->syn = *conf;
}

static struct fp_listener *slot_of(struct tas_fp *fp, int slot)
{
    return slot >= 0 && slot < TAS_SYN_MAX_LISTENERS ? &fp->listeners[slot] : NULL;
}

int tas_fp_listener_add(struct tas_fp *fp, uint32_t listener_id, uint16_t port, uint16_t ctx,
                        uint32_t app_id, int handoff, uint32_t backlog,
                        const uint64_t *accept_ctr)
{
    return fp_listener_slot_add(fp, listener_id, port, ctx, app_id, handoff, backlog, accept_ctr,
                                false);
}

int fp_listener_slot_add(struct tas_fp *fp, uint32_t listener_id, uint16_t port, uint16_t ctx,
                         uint32_t app_id, int handoff, uint32_t backlog,
                         const uint64_t *accept_ctr, bool connector)
{
    for (int i = 0; i < TAS_SYN_MAX_LISTENERS; i++) {
        struct fp_listener *l = &fp->listeners[i];
        if (__atomic_load_n(&l->active, __ATOMIC_ACQUIRE))
            continue;
        rte_spinlock_lock(&l->lock);
        l->id = listener_id;
        l->port = port;
        l->ctx = ctx;
        l->app_id = app_id;
        l->handoff = handoff != 0;
        l->connector = connector;
        l->accepting = l->primary = false;
        l->backlog = backlog;
        l->accept_ctr = accept_ctr;
        l->opened = l->gone = 0;
        l->npool = l->npool_hi = 0;
        __atomic_store_n(&l->active, true, __ATOMIC_RELEASE);
        rte_spinlock_unlock(&l->lock);
        if (i + 1 > fp->listeners_hi)
            __atomic_store_n(&fp->listeners_hi, (uint16_t)(i + 1), __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

void tas_fp_listener_accepting(struct tas_fp *fp, int slot)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l != NULL)
        __atomic_store_n(&l->accepting, true, __ATOMIC_RELEASE);
}

void tas_fp_listener_primary(struct tas_fp *fp, int slot)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l != NULL)
        __atomic_store_n(&l->primary, true, __ATOMIC_RELEASE);
}

void tas_fp_listener_remove(struct tas_fp *fp, int slot)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l == NULL)
        return;
    /* A core opening a connection holds the lock from its check of
     * `active` to the record it queues: after this, none is in flight. */
    rte_spinlock_lock(&l->lock);
    __atomic_store_n(&l->active, false, __ATOMIC_RELEASE);
    rte_spinlock_unlock(&l->lock);
}

int tas_fp_listener_pool_push(struct tas_fp *fp, int slot, const struct tas_syn_buf *b)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l == NULL)
        return -1;
    int r = -1;
    rte_spinlock_lock(&l->lock);
    if (l->npool < TAS_SYN_POOL_MAX) {
        l->pool[l->npool++] = *b;
        if (l->npool > l->npool_hi)
            l->npool_hi = l->npool;
        r = 0;
    }
    rte_spinlock_unlock(&l->lock);
    return r;
}

int tas_fp_listener_pool_pop(struct tas_fp *fp, int slot, struct tas_syn_buf *out)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l == NULL)
        return 0;
    int r = 0;
    rte_spinlock_lock(&l->lock);
    if (l->npool > 0) {
        *out = l->pool[--l->npool];
        r = 1;
    }
    rte_spinlock_unlock(&l->lock);
    return r;
}

uint32_t tas_fp_listener_pool_count(struct tas_fp *fp, int slot)
{
    struct fp_listener *l = slot_of(fp, slot);
    return l != NULL ? __atomic_load_n(&l->npool, __ATOMIC_ACQUIRE) : 0;
}

/* The backlog's counts of connections the slow path opened or saw go. */
static void listener_count(struct tas_fp *fp, int slot, bool gone)
{
    struct fp_listener *l = slot_of(fp, slot);
    if (l == NULL)
        return;
    rte_spinlock_lock(&l->lock);
    if (gone)
        l->gone++;
    else
        l->opened++;
    rte_spinlock_unlock(&l->lock);
}

void tas_fp_listener_opened(struct tas_fp *fp, int slot)
{
    listener_count(fp, slot, false);
}

void tas_fp_listener_gone(struct tas_fp *fp, int slot)
{
    listener_count(fp, slot, true);
}

static uint32_t held_slot(uint32_t peer_ip, uint16_t local_port, uint16_t peer_port)
{
    return rte_jhash_3words(peer_ip, local_port, peer_port, 0) & (TAS_SYN_HELD_SLOTS - 1);
}

void tas_fp_syn_hold(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                     uint16_t peer_port, int delta)
{
    uint16_t *h = &fp->syn_held[held_slot(peer_ip, local_port, peer_port)];
    if (delta > 0)
        __atomic_fetch_add(h, 1, __ATOMIC_SEQ_CST);
    else if (__atomic_load_n(h, __ATOMIC_SEQ_CST) > 0)
        __atomic_fetch_sub(h, 1, __ATOMIC_SEQ_CST);
}

bool fp_syn_held(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port, uint16_t peer_port)
{
    return __atomic_load_n(&fp->syn_held[held_slot(peer_ip, local_port, peer_port)],
                           __ATOMIC_SEQ_CST) != 0;
}

/* Milliseconds of the TSC (the microsecond clock wraps in 71 minutes,
 * this one in 49 days). */
static uint32_t tw_clock_ms(struct tas_fp *fp)
{
    return (uint32_t)(rte_get_tsc_cycles() / (fp->tsc_per_us * 1000u));
}

int tas_fp_tw_add(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                  uint16_t peer_port, uint32_t rcv_nxt)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    /* rcv_nxt, and the millisecond it came (a connect's reuse waits a second) */
    uint64_t data = (uint64_t)tw_clock_ms(fp) << 32 | rcv_nxt;
    return rte_hash_add_key_data(fp->tw_hash, &k, (void *)(uintptr_t)data) == 0 ? 0 : -1;
}

void tas_fp_tw_del(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                   uint16_t peer_port)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    rte_hash_del_key(fp->tw_hash, &k);
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

bool fp_listener_port(struct tas_fp *fp, uint16_t port)
{
    uint16_t hi = __atomic_load_n(&fp->listeners_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = 0; i < hi; i++) {
        const struct fp_listener *l = &fp->listeners[i];
        if (__atomic_load_n(&l->active, __ATOMIC_ACQUIRE) && l->port == port && !l->connector)
            return true;
    }
    return false;
}

int fp_tw_take_for_connect(struct tas_fp *fp, uint32_t peer_ip, uint16_t local_port,
                           uint16_t peer_port, uint32_t *rcv_nxt)
{
    struct fp_flow_key k = fp_flow_key(peer_ip, local_port, peer_port);
    void *data;
    if (rte_hash_lookup_data(fp->tw_hash, &k, &data) < 0)
        return 0;
    uint32_t since = (uint32_t)((uint64_t)(uintptr_t)data >> 32);
    *rcv_nxt = (uint32_t)(uintptr_t)data;
    if (!fp->syn.tw_reuse || tw_clock_ms(fp) - since <= 1000u)   /* over a second old */
        return -1;
    /* A core that lost the race to another reusing it sees it gone. */
    return rte_hash_del_key(fp->tw_hash, &k) >= 0 ? 1 : -1;
}

struct fp_listener *fp_listener_pick(struct tas_fp *fp, uint16_t port, int *why)
{
    struct fp_listener *takers[16], *primary = NULL;
    unsigned n = 0;
    bool any = false;
    uint16_t hi = __atomic_load_n(&fp->listeners_hi, __ATOMIC_ACQUIRE);
    for (uint16_t i = 0; i < hi; i++) {
        struct fp_listener *l = &fp->listeners[i];
        if (!__atomic_load_n(&l->active, __ATOMIC_ACQUIRE) || l->port != port || l->connector)
            continue;
        any = true;
        if (__atomic_load_n(&l->accepting, __ATOMIC_ACQUIRE) && n < RTE_DIM(takers))
            takers[n++] = l;
        if (__atomic_load_n(&l->primary, __ATOMIC_ACQUIRE))
            primary = l;
    }
    if (n == 0 && primary == NULL) {
        *why = any ? TAS_SYN_FB_NO_TAKER : -1;
        return NULL;
    }
    struct fp_listener *l = n == 0 ? primary :
        takers[__atomic_fetch_add(&fp->syn_rr, 1, __ATOMIC_RELAXED) % n];
    if (!l->handoff) {
        *why = TAS_SYN_FB_NOT_HANDOFF;
        return NULL;
    }
    return l;
}
