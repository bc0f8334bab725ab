/*
 * The port's transmit side, below the TCP layer: packets are batched per
 * core and sent with one rte_eth_tx_burst (fault injection, retries for a
 * momentarily full ring, drop counting).  fp_tcp_tx.c and the loop call
 * down into it; it calls nothing above it.
 */
#include "fp_internal.h"

void fp_tx(struct fp_core *c, struct rte_mbuf **pkts, unsigned n)
{
    struct tas_fp *fp = c->fp;
    n = fp_fault_tx(c, pkts, n);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < n; i++)
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    unsigned sent = 0;
    enum fp_stage prev = fp_stage_enter(c, FP_ST_TX_DRV);
    /* A few retries absorb a momentarily full TX ring. */
    for (int tries = 0; sent < n && tries < 8; tries++)
        sent += rte_eth_tx_burst(fp->port, c->idx, pkts + sent, (uint16_t)(n - sent));
    fp_stage_leave(c, prev);
    if (sent < n) {
        for (unsigned i = sent; i < n; i++)
            bytes -= rte_pktmbuf_pkt_len(pkts[i]);
        kb_stats_add(fp->ctr.tx_drops, n - sent);
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
    c->hot.tx_pkts += sent;
    c->hot.tx_bytes += bytes;
}

void fp_tx_one(struct fp_core *c, struct rte_mbuf *m)
{
    c->txbuf[c->ntx++] = m;
    if (c->ntx == FP_BURST)
        fp_tx_flush(c);
}

void fp_tx_flush(struct fp_core *c)
{
    if (c->ntx > 0) {
        fp_tx(c, c->txbuf, c->ntx);
        c->ntx = 0;
    }
}
