/*
 * Fault injection: random loss, duplication and reordering of frames, for
 * testing recovery where the kernel offers no netem.  Off unless configured
 * (every rate is 0 by default); counted in the stats page.
 */
#include <rte_random.h>

#include "fp_internal.h"

static bool chance(uint32_t ppm)
{
    return ppm != 0 && rte_rand_max(1000000) < ppm;
}

unsigned fp_fault_rx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n, unsigned max)
{
    const struct tas_fp_conf *cf = &c->fp->conf;
    struct fp_counters *ctr = &c->fp->ctr;
    if (!cf->fault_rx_loss_ppm && !cf->fault_rx_dup_ppm && !cf->fault_rx_reorder_ppm &&
        c->held_rx == NULL)
        return n;
    struct rte_mbuf *out[FP_RX_MAX];
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        struct rte_mbuf *m = pkts[i];
        if (chance(cf->fault_rx_loss_ppm)) {
            rte_pktmbuf_free(m);
            kb_stats_add(ctr->fault_dropped, 1);
            continue;
        }
        if (c->held_rx == NULL && chance(cf->fault_rx_reorder_ppm)) {
            c->held_rx = m;            /* delivered after the next frame */
            kb_stats_add(ctr->fault_reordered, 1);
            continue;
        }
        out[k++] = m;
        if (c->held_rx != NULL) {
            out[k++] = c->held_rx;
            c->held_rx = NULL;
        }
        if (chance(cf->fault_rx_dup_ppm) && k < max) {
            struct rte_mbuf *d = rte_pktmbuf_copy(m, c->fp->pool, 0, UINT32_MAX);
            if (d != NULL) {
                out[k++] = d;
                kb_stats_add(ctr->fault_duplicated, 1);
            }
        }
    }
    if (n == 0 && c->held_rx != NULL) {   /* nothing followed: let it go */
        out[k++] = c->held_rx;
        c->held_rx = NULL;
    }
    memcpy(pkts, out, k * sizeof(*out));
    return k;
}

unsigned fp_fault_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    const struct tas_fp_conf *cf = &c->fp->conf;
    if (!cf->fault_tx_loss_ppm && !cf->fault_tx_reorder_ppm)
        return n;
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (chance(cf->fault_tx_loss_ppm)) {
            rte_pktmbuf_free(pkts[i]);
            kb_stats_add(c->fp->ctr.fault_dropped, 1);
            continue;
        }
        pkts[k++] = pkts[i];
        if (k >= 2 && chance(cf->fault_tx_reorder_ppm)) {
            struct rte_mbuf *t = pkts[k - 1];
            pkts[k - 1] = pkts[k - 2];
            pkts[k - 2] = t;
            kb_stats_add(c->fp->ctr.fault_reordered, 1);
        }
    }
    return k;
}
