/*
 * Core scaling (dissertation 3.2.4): the slow path decides how many
 * fast-path cores run; this file applies the decision.  All configured cores
 * exist from start-up, each with its NIC queue pair, TX work list and app
 * contexts ("queue" q).  Queue q is served by active core q % nactive, so a
 * queue whose core is switched off is taken over, not drained.  Where the
 * NIC has an RSS redirection table it is rewritten eagerly to the active
 * queues; where it has none (net_tap, af_packet fan-out) the queues of
 * inactive cores are still polled by their new owners.
 */
#include <string.h>
#include <unistd.h>

#include <rte_ethdev.h>

#include "fp_internal.h"

static void kick(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;
}

void fp_queue_wake(struct tas_fp *fp, uint16_t q)
{
    fp_core_wake(&fp->cores[fp_queue_owner(fp, q)]);
}

void fp_wake_active(struct tas_fp *fp)
{
    uint16_t n = __atomic_load_n(&fp->nactive, __ATOMIC_SEQ_CST);
    for (uint16_t i = 0; i < n; i++)
        fp_core_wake(&fp->cores[i]);
}

/* Steer the NIC's hash buckets to the active queues (best effort). */
static void reta_update(struct tas_fp *fp, uint16_t n)
{
    if (fp->reta_size == 0)
        return;
    struct rte_eth_rss_reta_entry64 reta[fp->reta_size / RTE_ETH_RETA_GROUP_SIZE + 1];
    memset(reta, 0, sizeof(reta));
    for (uint16_t i = 0; i < fp->reta_size; i++) {
        reta[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ULL << (i % RTE_ETH_RETA_GROUP_SIZE);
        reta[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = i % n;
    }
    if (rte_eth_dev_rss_reta_update(fp->port, reta, fp->reta_size) != 0)
        fp->reta_size = 0;     /* not supported after all: software takeover only */
}

static void publish(struct tas_fp *fp, uint16_t n)
{
    for (uint16_t q = 0; q < fp->conf.ncores; q++)
        __atomic_store_n(&fp->info->queue_owner[q], q % n, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fp->info->nactive, n, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fp->nactive, n, __ATOMIC_SEQ_CST);
}

void fp_scaling_init(struct tas_fp *fp)
{
    struct rte_eth_dev_info di;
    fp->reta_size = 0;
    if (fp->conf.ncores > 1 && rte_eth_dev_info_get(fp->port, &di) == 0)
        fp->reta_size = di.reta_size;
    for (uint16_t q = 0; q < TAS_FP_MAX_CORES; q++)
        rte_spinlock_init(&fp->qlock[q]);
    publish(fp, fp->conf.ncores);
}

uint16_t tas_fp_set_active_cores(struct tas_fp *fp, uint16_t n)
{
    if (n < 1)
        n = 1;
    if (n > fp->conf.ncores)
        n = fp->conf.ncores;
    if (n == fp->nactive)
        return n;
    reta_update(fp, n);
    publish(fp, n);
    /* New owners must look at their new queues; cores switched off must
     * notice and block.  Unconditional: a core about to sleep re-checks. */
    for (uint16_t i = 0; i < fp->conf.ncores; i++)
        kick(fp->cores[i].wake_fd);
    return n;
}

uint16_t tas_fp_active_cores(struct tas_fp *fp)
{
    return fp->nactive;
}

int tas_fp_queue_packets(struct tas_fp *fp, uint16_t q, uint64_t *rx, uint64_t *tx)
{
    struct rte_eth_stats st;
    if (q >= fp->conf.ncores || q >= RTE_ETHDEV_QUEUE_STAT_CNTRS ||
        rte_eth_stats_get(fp->port, &st) != 0)
        return -1;
    *rx = st.q_ipackets[q];
    *tx = st.q_opackets[q];
    return 0;
}

int tas_fp_reta_size(struct tas_fp *fp)
{
    return fp->reta_size;
}
