/* Addresses, socket options, fcntl and ioctl on TAS sockets. */
/* fcntl and fcntl64 are both defined here: no header redirect of one to the other. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <string.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "interpose.h"

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return lt_relayed_addr(fd, 0, addr, len) ? 0 : REAL(getsockname)(fd, addr, len);
    lt_fill_addr(s, addr, len, s->local_ip, s->local_port);
    return 0;
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return lt_relayed_addr(fd, 1, addr, len) ? 0 : REAL(getpeername)(fd, addr, len);
    /* A connection inherited over fork and not taken over yet (claim_flow)
     * is connected too: its addresses are the parent's, and asking for them
     * takes nothing over (ncat -l --sh-exec's child names the client, then
     * its exec'd command uses the connection). */
    if (s->kind != LT_CONN && s->claim_flow == 0) {
        errno = ENOTCONN;
        return -1;
    }
    lt_fill_addr(s, addr, len, s->remote_ip, s->remote_port);
    return 0;
}

/* SO_LINGER with l_onoff set and a zero l_linger makes close reset the
 * connection.  A non-zero timeout closes gracefully without blocking: the
 * daemon still delivers the data and FIN after close returns.  SO_RCVTIMEO
 * and SO_SNDTIMEO bound the blocking calls.  Other options only tune the
 * kernel's stack (TCP_NODELAY, keepalive, buffer sizes...): TAS has its own
 * policy, so they are accepted and ignored. */
/* SO_RCVTIMEO / SO_SNDTIMEO (and their _NEW numbers, the same struct on
 * 64-bit), or NULL. */
static int64_t *timeo_of(struct lt_sock *s, int level, int name)
{
    if (level != SOL_SOCKET)
        return NULL;
    if (name == SO_RCVTIMEO
#ifdef SO_RCVTIMEO_NEW
        || (sizeof(long) == 8 && name == SO_RCVTIMEO_NEW)
#endif
    )
        return &s->rcvtimeo_us;
    if (name == SO_SNDTIMEO
#ifdef SO_SNDTIMEO_NEW
        || (sizeof(long) == 8 && name == SO_SNDTIMEO_NEW)
#endif
    )
        return &s->sndtimeo_us;
    return NULL;
}

/* As Linux's sock_set_timeout: 0 s 0 us is no timeout, a negative one
 * times out at once, tv_usec out of range is EDOM. */
static int set_timeo(int64_t *timeo, const void *val, socklen_t len)
{
    struct timeval tv;
    if (val == NULL || len < sizeof(tv)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(&tv, val, sizeof(tv));
    if (tv.tv_usec < 0 || tv.tv_usec >= 1000000) {
        errno = EDOM;
        return -1;
    }
    if (tv.tv_sec < 0)
        *timeo = 1;
    else if (tv.tv_sec > INT64_MAX / 1000000 / 1000 - 1)
        *timeo = 0;             /* as good as forever */
    else
        *timeo = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    return 0;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(setsockopt)(fd, level, name, val, len);
    int64_t *timeo = timeo_of(s, level, name);
    if (timeo != NULL) {
        /* Honoured by the blocking calls (sock_io.c, accept, connect): a
         * recv under SO_RCVTIMEO used to wait forever */
        lt_lock();
        int r = set_timeo(timeo, val, len);
        lt_unlock();
        if (r == 0)
            lt_record_option(s, level, name, val, len);
        return r;
    }
    lt_record_option(s, level, name, val, len);
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger l;
        if (val == NULL || len < sizeof(l)) {
            errno = EINVAL;
            return -1;
        }
        memcpy(&l, val, sizeof(l));
        lt_lock();
        s->linger_rst = l.l_onoff != 0 && l.l_linger == 0;
        lt_unlock();
    }
    return 0;
}

static int option_value(struct lt_sock *s, int level, int name)
{
    if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
        return s->v6only;
    if (level != SOL_SOCKET)
        return level == IPPROTO_TCP && name == TCP_NODELAY;
    switch (name) {
    case SO_ERROR: {
        int e = s->so_error;
        s->so_error = 0;
        return e;
    }
    case SO_TYPE:
        return SOCK_STREAM;
    case SO_DOMAIN:
        return s->family;
    case SO_REUSEADDR:
        return s->reuseaddr;
    case SO_PROTOCOL:
        return IPPROTO_TCP;
    case SO_ACCEPTCONN:
        return s->kind == LT_LISTEN;
    case SO_SNDBUF:
        return s->flow != NULL ? (int)s->flow->tx.size : 65536;
    case SO_RCVBUF:
        return s->flow != NULL ? (int)s->flow->rx.size : 65536;
    default:
        return 0;
    }
}

/* Linux's TCP state numbers (TCP_ESTABLISHED...), as TCP_INFO reports them. */
static uint8_t tcp_state(const struct lt_sock *s)
{
    switch (s->kind) {
    case LT_LISTEN:
        return TCP_LISTEN;
    case LT_CONNECTING:
        return TCP_SYN_SENT;
    case LT_CONN:
        if (s->flow->reset)
            return TCP_CLOSE;
        if (s->flow->rx_fin)
            return s->shut_wr ? TCP_LAST_ACK : TCP_CLOSE_WAIT;
        return s->shut_wr ? TCP_FIN_WAIT1 : TCP_ESTABLISHED;
    default:
        return TCP_CLOSE;
    }
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return lt_relayed_sockopt(fd, level, name, val, len) ? 0
                                                              : REAL(getsockopt)(fd, level, name, val, len);
    if (val == NULL || len == NULL) {
        errno = EFAULT;
        return -1;
    }
    lt_lock();
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger l = {.l_onoff = s->linger_rst, .l_linger = 0};
        lt_unlock();
        memcpy(val, &l, *len < sizeof(l) ? *len : sizeof(l));
        *len = *len < sizeof(l) ? *len : sizeof(l);
        return 0;
    }
    int64_t *timeo = timeo_of(s, level, name);
    if (timeo != NULL) {
        struct timeval tv = {.tv_sec = (time_t)(*timeo / 1000000),
                             .tv_usec = (suseconds_t)(*timeo % 1000000)};
        lt_unlock();
        memcpy(val, &tv, *len < sizeof(tv) ? *len : sizeof(tv));
        *len = *len < sizeof(tv) ? *len : sizeof(tv);
        return 0;
    }
    if (level == IPPROTO_TCP && name == TCP_INFO) {
        /* The connection's state; the rest (RTT, window, retransmits) lives
         * in the daemon (`tasctl flows`) and reads as zero here. */
        struct tcp_info ti = {.tcpi_state = tcp_state(s)};
        lt_unlock();
        memcpy(val, &ti, *len < sizeof(ti) ? *len : sizeof(ti));
        *len = *len < sizeof(ti) ? *len : sizeof(ti);
        return 0;
    }
    if (level == SOL_SOCKET && name == SO_ERROR)
        lt_progress();         /* a connect may have failed meanwhile */
    int v = option_value(s, level, name);
    lt_unlock();
    memcpy(val, &v, *len < sizeof(v) ? *len : sizeof(v));
    *len = *len < sizeof(v) ? *len : sizeof(v);
    return 0;
}

static int tas_fcntl(int fd, int cmd, long arg)
{
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(fcntl)(fd, cmd, arg);
    switch (cmd) {
    case F_GETFL:
        return O_RDWR | (s->nonblock ? O_NONBLOCK : 0);
    case F_SETFL:
        s->nonblock = !!(arg & O_NONBLOCK);
        return 0;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        lt_lock();
        int r = lt_dup_result(s, REAL(fcntl)(fd, cmd, arg));
        lt_unlock();
        return r;
    }
    default:                   /* F_GETFD/F_SETFD: the reserved fd's flags */
        return REAL(fcntl)(fd, cmd, arg);
    }
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return tas_fcntl(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return tas_fcntl(fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    struct lt_sock *s = lt_sock_of(fd);
    if (s == NULL)
        return REAL(ioctl)(fd, req, arg);
    if (req == FIONBIO) {
        s->nonblock = *(int *)arg != 0;
        return 0;
    }
    if (req == FIONREAD) {
        lt_lock();
        lt_claim(s);
        lt_progress();
        *(int *)arg = s->flow != NULL ? (int)tas_rx_ready(&s->flow->rx) : 0;
        lt_unlock();
        return 0;
    }
    if (req == TIOCOUTQ || req == SIOCATMARK) {    /* TIOCOUTQ is SIOCOUTQ */
        /* SIOCOUTQ: bytes written and not acknowledged yet (TX ring in
         * use); SIOCATMARK: never at an urgent mark (TAS has none) */
        lt_lock();
        lt_claim(s);
        lt_progress();
        *(int *)arg = req == SIOCATMARK || s->flow == NULL
                          ? 0 : (int)(s->flow->tx.size - s->flow->tx.free);
        lt_unlock();
        return 0;
    }
    errno = ENOTTY;
    return -1;
}
