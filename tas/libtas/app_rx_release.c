/*
 * libtas core: giving consumed receive bytes back to the window (rx_bump),
 * in stream order.  Without zIO that happens at once.  With zIO, whole
 * pages of the region that may hold zIO originals [reg_lo, reg_hi) go back
 * only when no zIO intermediate (zio_release_if_unshared) and no undigested
 * Strata reference (strata_ref_busy) depends on them; the rest of the
 * consumed bytes go back page by page.  A forced release lets nothing wait:
 * Strata digests its log, zIO fills the dependents, everything consumed
 * goes back -- before sleeping with little free space, on close and before
 * fork, so the window never stalls on our own holds.
 */
#define _GNU_SOURCE
#include "app_internal.h"
#include "app_rx_internal.h"

void rx_held_changed(struct tas_app *a, struct tas_rx *r, int64_t delta)
{
    uint64_t now = __atomic_add_fetch(a->ctr[RXC_HELD], (uint64_t)delta, __ATOMIC_RELAXED);
    if (now > __atomic_load_n(a->ctr[RXC_HELD_PEAK], __ATOMIC_RELAXED))
        __atomic_store_n(a->ctr[RXC_HELD_PEAK], now, __ATOMIC_RELAXED);
    int holds = r->read > r->freed;
    if (holds && !r->held_listed) {
        r->held_prev = NULL;
        r->held_next = a->held;
        if (a->held != NULL)
            a->held->held_prev = r;
        a->held = r;
        r->held_listed = 1;
    } else if (!holds && r->held_listed) {
        if (r->held_prev != NULL)
            r->held_prev->held_next = r->held_next;
        else
            a->held = r->held_next;
        if (r->held_next != NULL)
            r->held_next->held_prev = r->held_prev;
        r->held_prev = r->held_next = NULL;
        r->held_listed = 0;
    }
}

static void bump(struct tas_app *a, struct tas_rx *r, uint64_t n)
{
    if (n == 0)
        return;
    r->freed += n;
    tas_app_post_ctx(a, r->ctx, r->flow_id, (uint32_t)n, 0, 0);
    rx_count(a, RXC_BUMPS, 1);
    rx_held_changed(a, r, -(int64_t)n);
}

/* Adapters: one signature for "is anything depending on [p, p+n)?"
 * (0 no).  The zIO one also unregisters the range when it answers 0. */
static const struct orp_api *api_now;

static int zio_busy(const void *p, size_t n)
{
    if (api_now->zio_try_release != NULL)
        return api_now->zio_try_release((void *)p, n) != 0;
    api_now->zio_release((void *)p, n);  /* no try-release: fill, never hold */
    return 0;
}

static int strata_busy(const void *p, size_t n)
{
    return api_now->strata_busy(p, n) != 0;
}

/* Longest free prefix of [p, p+len) in whole pages (len is whole pages).
 * Right after a copy the oldest page is usually still in use, so that is
 * asked first; otherwise a binary search.  Asking about a range that
 * turns out free is fine for zio_busy: it is released either way. */
static size_t free_prefix(int (*busy)(const void *, size_t), uint8_t *p, size_t len)
{
    if (busy(p, RX_PAGE))
        return 0;
    if (len == RX_PAGE || !busy(p + RX_PAGE, len - RX_PAGE))
        return len;
    size_t good = RX_PAGE, bad = len;
    while (bad - good > RX_PAGE) {
        size_t mid = good + rx_pg_floor((bad - good) / 2);
        if (mid == good)
            mid = good + RX_PAGE;
        if (busy(p + good, mid - good))
            bad = mid;
        else
            good = mid;
    }
    return good;
}

/* Release [freed, end) of the zIO region (end <= reg_hi, within one lap
 * segment of the ring); returns the bytes that may go back. */
static uint64_t release_region(struct tas_app *a, struct tas_rx *r, uint64_t end, int force,
                               int *digested)
{
    uint8_t *p = rx_at(a, r, r->freed, NULL);
    size_t len = (size_t)(end - r->freed);
    if (force) {
        if (api_now->strata_busy != NULL && api_now->strata_digest != NULL && !*digested &&
            api_now->strata_busy(p, len)) {
            api_now->strata_digest();
            rx_count(a, RXC_DIGESTS, 1);
            *digested = 1;
        }
        api_now->zio_release(p, len);
        return len;
    }
    size_t ok = free_prefix(zio_busy, p, len);
    if (ok > 0 && api_now->strata_busy != NULL) {
        /* no new reference can appear: zIO no longer resolves to these */
        size_t s = free_prefix(strata_busy, p, ok);
        if (s < ok)
            rx_count(a, RXC_STRATA_BUSY, 1);
        ok = s;
    }
    if (ok < len)
        rx_count(a, RXC_RELEASE_BUSY, 1);
    rx_count(a, RXC_RELEASED_HELD, ok);
    return ok;
}

uint32_t tas_rx_release(struct tas_app *a, struct tas_rx *r, int force)
{
    const struct orp_api *api = api_now = orp_api();
    uint64_t start = r->freed;
    /* while zIO is loaded a partly consumed page stays: it may be
     * registered once the rest of it has arrived */
    uint64_t limit = force || api->zio_register == NULL ? r->read : rx_pg_floor(r->read);
    /* nor do the last bytes of the open copy run: the next piece of it may
     * make the pages they fill together a zIO intermediate of these ring
     * bytes (zio_copy_continued).  Only a short tail can be taken over: a
     * run below the threshold, or the part page after what was elided. */
    if (!force && api->zio_copy_continued != NULL && r->run_len > 0 && r->run_pos == r->read) {
        uint64_t back = api->zio_threshold + RX_PAGE;
        if (back > r->run_len)
            back = r->run_len;
        if (rx_pg_floor(r->run_pos - back) < limit)
            limit = rx_pg_floor(r->run_pos - back);
    }
    int digested = 0;
    while (r->freed < limit) {
        int region = r->reg_lo < r->reg_hi;
        if (!region || r->freed < r->reg_lo) {
            uint64_t end = region && r->reg_lo < limit ? r->reg_lo : limit;
            bump(a, r, end - r->freed);
            continue;
        }
        uint32_t to_end;
        rx_at(a, r, r->freed, &to_end);
        uint64_t end = limit < r->reg_hi ? limit : r->reg_hi;
        if (end - r->freed > to_end)
            end = r->freed + to_end;
        uint64_t len = end - r->freed;
        uint64_t ok = release_region(a, r, end, force, &digested);
        bump(a, r, ok);
        if (r->freed >= r->reg_hi)
            r->reg_lo = r->reg_hi;             /* region empty */
        if (ok < len)
            break;                              /* FIFO: the rest waits */
    }
    /* pages below freed are no originals any more (zio_release rounds out
     * to whole pages, so after a forced release that stopped mid-page
     * neither is that page) */
    if (r->reg_lo < r->reg_hi && r->freed > r->reg_lo) {
        r->reg_lo = rx_pg_ceil(r->freed);
        if (r->reg_lo >= r->reg_hi)
            r->reg_lo = r->reg_hi;
    }
    return (uint32_t)(r->freed - start);
}

static void force(struct tas_app *a, struct tas_rx *r, enum rx_ctr why)
{
    uint32_t n = tas_rx_release(a, r, 1);
    if (n > 0) {
        rx_count(a, RXC_FORCED, 1);
        rx_count(a, why, 1);
        rx_count(a, RXC_FORCED_BYTES, n);
    }
}

void tas_rx_close(struct tas_app *a, struct tas_rx *r)
{
    force(a, r, RXC_FORCED_CLOSE);
    /* Pages registered ahead of the reads stay zIO originals until told
     * otherwise; the daemon hands the ring to the next flow after close. */
    const struct orp_api *api = orp_api();
    uint64_t pos = r->reg_lo > r->freed ? r->reg_lo : r->freed;
    while (api->zio_release != NULL && pos < r->reg_hi) {
        uint32_t to_end;
        uint8_t *p = rx_at(a, r, pos, &to_end);
        uint64_t n = r->reg_hi - pos < to_end ? r->reg_hi - pos : to_end;
        api->zio_release(p, (size_t)n);
        pos += n;
    }
    r->reg_lo = r->reg_hi;
}

/* We hold bytes of the ring, and less than size/part of it is free. */
static int free_below(const struct tas_rx *r, uint32_t part)
{
    return r->held_listed && r->size - (r->seen - r->freed) < r->size / part;
}

/* Under a quarter free: relieved (digest, then forced release) before sleeping. */
static int under_pressure(const struct tas_rx *r)
{
    return free_below(r, 4);
}
/* Under pressure, Strata's undigested references usually hold most of the
 * ring: digest first (references go, nothing is copied), then release what
 * no zIO intermediate needs; only what is still held then is forced, which
 * fills intermediates (copies). */
static void relieve(struct tas_app *a, struct tas_rx *r, int *digested)
{
    const struct orp_api *api = orp_api();
    if (!*digested && api->strata_digest != NULL && r->freed < r->reg_hi) {
        api->strata_digest();
        rx_count(a, RXC_DIGESTS, 1);
        rx_count(a, RXC_PRESSURE_DIGESTS, 1);
        *digested = 1;
        tas_rx_release(a, r, 0);
    }
    if (under_pressure(r))
        force(a, r, RXC_FORCED_PRESSURE);
}

void tas_app_rx_before_sleep(struct tas_app *a)
{
    const struct orp_api *api = orp_api();
    int digested = 0, kicked = api->strata_kick == NULL;
    for (struct tas_rx *r = a->held, *next; r != NULL; r = next) {
        next = r->held_next;   /* r may leave the list */
        tas_rx_release(a, r, 0);
        /* Half the ring held: Strata digests in the background now, so the
         * references are usually gone before the ring comes under pressure
         * and the program never waits for a digest. */
        if (!kicked && free_below(r, 2) && r->freed < r->reg_hi) {
            kicked = 1;
            if (api->strata_kick() == 0)
                rx_count(a, RXC_DIGEST_KICKS, 1);
        }
        if (under_pressure(r))
            relieve(a, r, &digested);
    }
}

void tas_app_rx_release_all(struct tas_app *a)
{
    for (struct tas_rx *r = a->held, *next; r != NULL; r = next) {
        next = r->held_next;
        force(a, r, RXC_FORCED_FORK);
    }
}
