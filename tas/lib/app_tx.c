/* libtas core: appending bytes to a flow's transmit ring (struct tas_tx). */
#include <string.h>

#include "app_internal.h"

void tas_tx_open(struct tas_tx *t, uint32_t off, uint32_t size)
{
    *t = (struct tas_tx){.off = off, .size = size, .free = size};
}

uint32_t tas_tx_append(struct tas_app *a, struct tas_tx *t, const void *buf, uint32_t len)
{
    if (len > t->free)
        len = t->free;
    uint8_t *ring = a->base + t->off;
    uint32_t first = t->size - t->head < len ? t->size - t->head : len;
    memcpy(ring + t->head, buf, first);
    memcpy(ring, (const uint8_t *)buf + first, len - first);
    t->head = (uint32_t)((t->head + len) % t->size);
    t->free -= len;
    return len;
}
