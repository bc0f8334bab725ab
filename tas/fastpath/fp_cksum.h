/*
 * Internet checksums for the fast path.  DPDK 22.11's rte_raw_cksum adds
 * one 16-bit word at a time (about 750 cycles for a 1460-byte segment
 * here); these add 32-bit words into 64-bit sums, which is the same
 * ones'-complement sum once folded (2^32 = 1 modulo 2^16 - 1): four scalar
 * sums take about a quarter of the time, AVX2 (fp_cksum.c) a fifteenth.
 * Every data segment is summed once on receive (to verify) and once on
 * transmit (fp_tcp_tx.c).
 */
#ifndef TAS_FP_CKSUM_H
#define TAS_FP_CKSUM_H

#include <stdint.h>
#include <string.h>

#include <rte_ip.h>
#include <rte_tcp.h>

/* A 64-bit sum folded to 16 bits (end-around carries). */
static inline uint16_t fp_fold(uint64_t a)
{
    a = (a & 0xffffffffu) + (a >> 32);
    a = (a & 0xffffffffu) + (a >> 32);
    a = (a & 0xffff) + (a >> 16);
    a = (a & 0xffff) + (a >> 16);
    a = (a & 0xffff) + (a >> 16);
    return (uint16_t)a;
}

/* Ones'-complement sum of a 32-bit value's two 16-bit halves. */
static inline uint32_t fp_halves(uint32_t v)
{
    return (v >> 16) + (v & 0xffff);
}

static inline uint16_t fp_fold_add(uint16_t x, uint16_t y)
{
    return fp_fold((uint64_t)x + y);
}

/* Folded (not complemented) ones'-complement sum of buf, as rte_raw_cksum. */
static inline uint16_t fp_raw_cksum_scalar(const void *buf, uint32_t len)
{
    const uint8_t *p = buf;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (; len >= 16; p += 16, len -= 16) {
        uint32_t w[4];
        memcpy(w, p, sizeof(w));
        a += w[0];
        b += w[1];
        c += w[2];
        d += w[3];
    }
    a += b + c + d;
    for (; len >= 4; p += 4, len -= 4) {
        uint32_t w;
        memcpy(&w, p, sizeof(w));
        a += w;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, sizeof(w));
        a += w;
        p += 2;
        len -= 2;
    }
    if (len)               /* an odd last byte is the first of a 16-bit word */
        a += *p;
    return fp_fold(a);
}

/* The same, vectorized where the CPU allows (fp_cksum.c). */
uint16_t fp_raw_cksum_bulk(const void *buf, uint32_t len);

static inline uint16_t fp_raw_cksum(const void *buf, uint32_t len)
{
    return len >= 256 ? fp_raw_cksum_bulk(buf, len) : fp_raw_cksum_scalar(buf, len);
}

/* Sum of a TCP segment (l4len bytes from tcp) and its pseudo header. */
static inline uint16_t fp_tcp_sum(const struct rte_ipv4_hdr *ip, const void *tcp, uint32_t l4len)
{
    uint32_t sum = (uint32_t)fp_raw_cksum(tcp, l4len) + rte_ipv4_phdr_cksum(ip, 0);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

#endif
