/* libtas core: appending bytes to a flow's transmit ring (struct tas_tx).
 *
 * The copy is libc's memcpy, never libzio's: the ring is shared memory the
 * fast path reads, so a copy into it must really happen.  (libzio takes
 * not-yet-touched pages of a shared mapping for missing anonymous ones and
 * would make them intermediates: the fast path then sent zeros.)  A source
 * that is a zIO intermediate faults and libzio fills it. */
#include "app_internal.h"

void tas_tx_open(struct tas_tx *t, uint32_t off, uint32_t size)
{
    *t = (struct tas_tx){.off = off, .size = size, .free = size};
}

uint32_t tas_tx_append(struct tas_app *a, struct tas_tx *t, const void *buf, uint32_t len)
{
    if (len > t->free)
        len = t->free;
    void *(*copy)(void *, const void *, size_t) = orp_api()->plain_memcpy;
    uint8_t *ring = a->base + t->off;
    uint32_t first = t->size - t->head < len ? t->size - t->head : len;
    copy(ring + t->head, buf, first);
    copy(ring, (const uint8_t *)buf + first, len - first);
    t->head = (uint32_t)((t->head + len) % t->size);
    t->free -= len;
    return len;
}
