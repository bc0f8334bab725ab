/* Shared by app_rx.c (reading) and app_rx_release.c (giving back). */
#ifndef TAS_APP_RX_INTERNAL_H
#define TAS_APP_RX_INTERNAL_H

#include <stdint.h>

#include "app_internal.h"
#include "zio/zio_api.h"       /* flags only: the functions come from orp_api() */

#define RX_PAGE 4096u
/* How far back a copy run may reach (zio_copy_continued's prior) */
#define RX_RUN_MAX (1u << 20)

static inline uint64_t rx_pg_floor(uint64_t x) { return x & ~(uint64_t)(RX_PAGE - 1); }
static inline uint64_t rx_pg_ceil(uint64_t x) { return rx_pg_floor(x + RX_PAGE - 1); }

/* Ring address of stream position pos and the bytes from there to the end
 * of the ring. */
static inline uint8_t *rx_at(struct tas_app *a, const struct tas_rx *r, uint64_t pos, uint32_t *to_end)
{
    uint32_t p = (uint32_t)(pos % r->size);
    if (to_end != NULL)
        *to_end = r->size - p;
    return a->base + r->off + p;
}

/* Held bytes (read - freed) of r changed by delta: counters, held list. */
void rx_held_changed(struct tas_app *a, struct tas_rx *r, int64_t delta);

#endif
