/*
 * libtas core: received bytes of a flow (struct tas_rx, include/tas/app.h).
 * Reading: peek (iovecs over the ring), copy, consume.  Before a copy large
 * enough for zIO to elide, the newly received whole ring pages are
 * registered as zIO originals, each once per lap of the ring; giving bytes
 * back to the window is app_rx_release.c's job.
 */
#define _GNU_SOURCE
#include <string.h>

#include "app_internal.h"
#include "app_rx_internal.h"

void tas_rx_open(struct tas_app *a, struct tas_rx *r, uint32_t flow_id, int ctx,
                 uint32_t off, uint32_t size)
{
    r->flow_id = flow_id;
    r->ctx = ctx;
    r->off = off;
    r->size = size;
    /* zIO works on whole pages: a ring that does not start and end on page
     * boundaries would have pages shared with its neighbours. */
    r->no_zio = ((uintptr_t)(a->base + off) | size) % RX_PAGE != 0 || size == 0;
}

void tas_rx_arrived(struct tas_rx *r, uint32_t n)
{
    r->seen += n;
}

uint32_t tas_rx_ready(const struct tas_rx *r)
{
    return (uint32_t)(r->seen - r->read);
}

int tas_rx_peek(struct tas_app *a, const struct tas_rx *r, uint32_t skip, uint32_t len,
                struct iovec *iov)
{
    uint32_t ready = tas_rx_ready(r);
    if (skip >= ready || len == 0)
        return 0;
    if (len > ready - skip)
        len = ready - skip;
    uint32_t to_end;
    uint8_t *p = rx_at(a, r, r->read + skip, &to_end);
    if (len <= to_end) {
        iov[0] = (struct iovec){.iov_base = p, .iov_len = len};
        return 1;
    }
    iov[0] = (struct iovec){.iov_base = p, .iov_len = to_end};
    iov[1] = (struct iovec){.iov_base = a->base + r->off, .iov_len = len - to_end};
    return 2;
}

/* Register the received whole pages not registered yet as zIO originals.
 * A page may be registered only while none of its bytes has been given
 * back: from then on the fast path could write it (the next lap) under a
 * dependent.  Release keeps the region [reg_lo, reg_hi) held until zIO
 * lets it go, so each page is registered at most once per lap. */
static void register_new_pages(struct tas_app *a, struct tas_rx *r, const struct orp_api *api)
{
    uint64_t lo = rx_pg_floor(r->read);
    if (lo < rx_pg_ceil(r->freed))
        lo = rx_pg_ceil(r->freed);
    if (lo < r->reg_hi)
        lo = r->reg_hi;
    uint64_t hi = rx_pg_floor(r->seen);
    if (hi <= lo)
        return;
    for (uint64_t pos = lo; pos < hi;) {
        uint32_t to_end;
        uint8_t *p = rx_at(a, r, pos, &to_end);
        uint64_t n = hi - pos < to_end ? hi - pos : to_end;
        /* a failure (zIO's table full) leaves the pages plain: still
         * correct, the copy is simply not elided */
        api->zio_register(p, (size_t)n, ZIO_ORIG_NVM);
        pos += n;
    }
    if (r->reg_lo == r->reg_hi)
        r->reg_lo = lo;        /* any gap up to lo is consumed and held too */
    r->reg_hi = hi;
    rx_count(a, RXC_REGISTERED, hi - lo);
}

/* Bytes before this copy that the run's earlier copies put right before
 * dst from right before src (the stream and the memory both continue). */
static size_t run_prior(const struct tas_rx *r, uint64_t pos, const uint8_t *dst)
{
    if (r->run_len == 0 || r->run_pos != pos || r->run_dst != (uintptr_t)dst)
        return 0;
    return r->run_len < RX_RUN_MAX ? (size_t)r->run_len : RX_RUN_MAX;
}

uint32_t tas_rx_copy(struct tas_app *a, struct tas_rx *r, uint32_t skip, void *buf,
                     uint32_t len)
{
    struct iovec iov[2];
    int n = tas_rx_peek(a, r, skip, len, iov);
    if (n == 0)
        return 0;
    const struct orp_api *api = orp_api();
    size_t total = iov[0].iov_len + (n > 1 ? iov[1].iov_len : 0);
    uint64_t pos = r->read + skip;
    uint8_t *out = buf;
    int zio = api->zio_register != NULL && !r->no_zio;
    size_t prior = run_prior(r, pos, out);
    rx_count(a, RXC_COPIES, 1);
    if (total < api->zio_threshold)
        rx_count(a, RXC_COPIES_SMALL, 1);
    if (prior > 0)
        rx_count(a, RXC_COPIES_CONTINUED, 1);
    if (zio && total + prior >= api->zio_threshold)
        register_new_pages(a, r, api);
    for (int i = 0; i < n; i++, prior = 0) {   /* the ring's wrap starts a new run */
        size_t k = iov[i].iov_len;
        if (zio && api->zio_copy_continued != NULL)
            api->zio_copy_continued(out, iov[i].iov_base, k, prior);
        else
            memcpy(out, iov[i].iov_base, k);   /* libzio's memcpy when loaded */
        r->run_len = prior + k;
        out += k;
        pos += k;
    }
    r->run_pos = pos;
    r->run_dst = (uintptr_t)out;
    return (uint32_t)total;
}

void tas_rx_consume(struct tas_app *a, struct tas_rx *r, uint32_t n)
{
    uint32_t ready = tas_rx_ready(r);
    if (n > ready)
        n = ready;
    if (n == 0)
        return;
    r->read += n;
    rx_count(a, RXC_BYTES, n);
    rx_held_changed(a, r, (int64_t)n);
}
