/*
 * The exception path between fast path and slow path: packets the fast path
 * does not handle go to the slow path on exc_ring (with their reason in the
 * mbuf's user data); packets the slow path sends go out through core 0.
 * Wakeups use eventfds only when the other side said it is sleeping, so the
 * common case costs no system call.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fp_internal.h"

static void eventfd_kick(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r; /* EAGAIN means the counter is already non-zero: still woken */
}

static void eventfd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
}

void fp_core_wake(struct fp_core *c)
{
    if (__atomic_load_n(&c->asleep, __ATOMIC_SEQ_CST))
        eventfd_kick(c->wake_fd);
}

void fp_sp_kick(struct tas_fp *fp)
{
    eventfd_kick(fp->sp_fd);
}

void fp_exceptions_push(struct tas_fp *fp, struct rte_mbuf **pkts, uint32_t *reasons, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        pkts[i]->hash.usr = reasons[i];
        kb_stats_add(fp->ctr.exc[reasons[i]], 1);
    }
    unsigned q = rte_ring_mp_enqueue_burst(fp->exc_ring, (void **)pkts, n, NULL);
    if (q < n) {
        kb_stats_add(fp->ctr.exc_ring_full, n - q);
        rte_pktmbuf_free_bulk(pkts + q, n - q);
    }
    if (q > 0)
        eventfd_kick(fp->sp_fd);
}

unsigned fp_sp_tx_drain(struct tas_fp *fp, struct rte_mbuf **out, unsigned max)
{
    return rte_ring_sc_dequeue_burst(fp->sp_tx_ring, (void **)out, max, NULL);
}

int tas_fp_sp_fd(struct tas_fp *fp)
{
    return fp->sp_fd;
}

int tas_fp_sp_recv(struct tas_fp *fp, uint8_t *buf, uint32_t buflen, uint32_t *reason)
{
    struct rte_mbuf *m;
    if (rte_ring_sc_dequeue(fp->exc_ring, (void **)&m) != 0) {
        eventfd_drain(fp->sp_fd);
        /* Re-check: a push may have raced with the drain. */
        if (rte_ring_sc_dequeue(fp->exc_ring, (void **)&m) != 0)
            return 0;
    }
    uint32_t len = rte_pktmbuf_data_len(m);
    if (len > buflen)
        len = buflen;
    memcpy(buf, rte_pktmbuf_mtod(m, void *), len);
    *reason = (uint32_t)m->hash.usr;
    rte_pktmbuf_free(m);
    return (int)len;
}

/* Copy a frame into an mbuf and queue it on `ring` for core 0. */
static int sp_enqueue(struct tas_fp *fp, struct rte_ring *ring, const uint8_t *buf, uint32_t len)
{
    if (len > fp->frame_room)
        return -EMSGSIZE;
    struct rte_mbuf *m = rte_pktmbuf_alloc(fp->pool);
    if (m == NULL)
        return -ENOMEM;
    char *dst = rte_pktmbuf_append(m, (uint16_t)len);
    if (dst == NULL) {
        rte_pktmbuf_free(m);
        return -EMSGSIZE;
    }
    memcpy(dst, buf, len);
    if (rte_ring_sp_enqueue(ring, m) != 0) {
        rte_pktmbuf_free(m);
        return -ENOBUFS;
    }
    fp_core_wake(&fp->cores[0]);
    return 0;
}

int tas_fp_sp_send(struct tas_fp *fp, const uint8_t *buf, uint32_t len)
{
    int r = sp_enqueue(fp, fp->sp_tx_ring, buf, len);
    if (r == 0)
        kb_stats_add(fp->ctr.sp_tx_pkts, 1);
    return r;
}

int tas_fp_sp_inject(struct tas_fp *fp, const uint8_t *buf, uint32_t len)
{
    return sp_enqueue(fp, fp->inject_ring, buf, len);
}
