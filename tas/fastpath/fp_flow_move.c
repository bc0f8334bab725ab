/*
 * Moving an unaccepted connection to another app (include/tas/flow.h).  A
 * connection handed over at its SYN is committed to one app's buffers; in a
 * prefork server the first listener (the master's, which never accepts)
 * takes connections until a worker joins, and those would wait there
 * forever.  The slow path moves them, once established, to a listener that
 * accepts: a new flow slot with the same TCP state over the new app's
 * buffers, the data already taken copied across.
 *
 * Under flow_wlock (one table writer) and the old flow's lock (no core adds
 * data meanwhile): the new slot is filled, the new app told (TAS_ARX_NEWCONN
 * ahead of anything about the flow, as a SYN answered here does), the
 * 4-tuple's hash entry pointed at the new slot, and the old slot switched
 * off.  A core that found the old slot before the switch sees it inactive
 * under its lock and passes the segment to the slow path, which hands it
 * back to the fast path (it knows the connection established): nothing
 * taken twice, nothing lost.
 */
#include <errno.h>
#include <string.h>

#include "fp_internal.h"

/* Only quiet established flows move: no handshake pending, nothing sent or
 * to send, no out-of-order interval, no close or reset on either side but
 * the peer's FIN (carried along).  An accepted one only for a forked
 * child's claim (the old app's close flag, if any, is not carried). */
static bool movable(const struct tas_flow *f, bool accepted)
{
    const uint32_t busy = TAS_FLF_SYNRCVD | TAS_FLF_SYNSENT | TAS_FLF_TXFIN |
                          TAS_FLF_TXFIN_SENT | TAS_FLF_FIN_EVER | TAS_FLF_RESET |
                          (accepted ? 0 : TAS_FLF_APP_CLOSED | TAS_FLF_APP_ACCEPTED) |
                          TAS_FLF_SACK_RECOV | TAS_FLF_PROBE;
    return (f->flags & TAS_FLF_ACTIVE) && !(f->flags & busy) && f->tx_sent == 0 &&
           f->tx_avail == 0 && f->rx_ooo_len == 0 && f->rx_avail <= f->rx_size;
}

/* The bytes the old app never read, from the start of the new ring. */
static void copy_unread(const struct tas_flow *from, uint8_t *to, uint32_t unread)
{
    uint32_t start = (from->rx_head + from->rx_size - unread) % from->rx_size;
    uint32_t first = RTE_MIN(unread, from->rx_size - start);
    memcpy(to, from->rx_base + start, first);
    memcpy(to + first, from->rx_base, unread - first);
}

static int move_locked(struct tas_fp *fp, struct tas_flow *f, const struct tas_flow_move *to)
{
    if (!movable(f, to->accepted != 0))
        return -EBUSY;
    if (fp->flow_free_count == 0)
        return -ENOSPC;
    uint32_t nid = fp->flow_free[fp->flow_free_head];
    struct tas_flow *n = &fp->flows[nid];
    uint32_t unread = f->rx_size - f->rx_avail;
    fp_lock(n);
    int32_t lock = n->lock;
    memcpy(n, f, sizeof(*n));          /* the TCP state, then what differs */
    n->lock = lock;
    n->opaque = 0;
    n->rx_base = to->rx_base;
    n->tx_base = to->tx_base;
    n->ctx = to->ctx;
    n->app_id = to->app_id;
    n->queue = (uint16_t)(nid % fp->conf.ncores);
    n->rx_head = unread % n->rx_size;
    n->tx_head = 0;
    n->flags &= ~(TAS_FLF_ACK_DUE |    /* on no core's list: the next segment ACKs */
                  TAS_FLF_APP_CLOSED | TAS_FLF_PEER_FIN_FIRST | TAS_FLF_RX_DISCARD);
    n->tx_queued = 0;
    n->pend_rx_bump = n->pend_tx_bump = n->pend_flags = n->pend_rx_pos = 0;
    copy_unread(f, n->rx_base, unread);
    struct tas_arx e = {
        .type = TAS_ARX_NEWCONN,
        .flow_id = nid,
        .opaque = (uint64_t)f->peer_ip << 32 | (uint32_t)f->peer_port << 16 | f->local_port,
        .rx_bump = to->listener_id,
        .rx_pos = to->rx_off,
        .tx_bump = to->tx_off,
    };
    struct fp_flow_key k = fp_flow_key(f->peer_ip, f->local_port, f->peer_port);
    if (fp_notify_newconn(fp, to->ctx, &e) != 0) {
        n->flags = 0;
        fp_unlock(n);
        return -ENOSPC;
    }
    /* An existing key: the entry now names the new slot (one store). */
    if (rte_hash_add_key_data(fp->flow_hash, &k, (void *)(uintptr_t)nid) != 0) {
        /* Cannot be for a key in the table; if it were, the new app holds a
         * NEWCONN for a flow that never comes: the slow path resets it. */
        n->flags = 0;
        fp_unlock(n);
        return -ENOSPC;
    }
    f->flags = 0;
    fp->flow_free_head = (fp->flow_free_head + 1) % TAS_FLOW_MAX;
    uint32_t tail = (fp->flow_free_head + fp->flow_free_count - 1) % TAS_FLOW_MAX;
    fp->flow_free[tail] = fp_flow_id(fp, f);
    /* The data and the handshake's end, in one entry after the NEWCONN. */
    fp_notify_app(fp, n, unread, 0, 0, TAS_ARX_FL_ESTABLISHED |
                  ((n->flags & TAS_FLF_RXFIN) ? TAS_ARX_FL_RXFIN : 0));
    fp_unlock(n);
    return (int)nid;
}

int tas_fp_flow_move(struct tas_fp *fp, uint32_t flow_id, const struct tas_flow_move *to)
{
    if (flow_id >= TAS_FLOW_MAX)
        return -EINVAL;
    struct tas_flow *f = &fp->flows[flow_id];
    rte_spinlock_lock(&fp->flow_wlock);
    fp_lock(f);
    int r = move_locked(fp, f, to);
    fp_unlock(f);
    rte_spinlock_unlock(&fp->flow_wlock);
    if (r >= 0) {
        tas_fp_flow_unpark(fp, flow_id);        /* that slot is free now */
        kb_stats_add(fp->ctr.flows_moved, 1);
    }
    return r;
}
