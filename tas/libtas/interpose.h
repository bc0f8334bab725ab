/*
 * libtas socket shim (LD_PRELOAD): internal declarations shared by the
 * interpose files.  TAS sockets are plain fd numbers backed by a reserved
 * kernel placeholder (O_PATH /dev/null), so numbers never collide with
 * kernel fds; the table below
 * maps those numbers to socket state kept over the libtas core (app.h).
 *
 * Every wrapper passes non-TAS fds straight to libc without taking the lock:
 * the core itself calls socket/send/recvmsg/poll/read/write/close, and those
 * calls land back in these wrappers.
 */
#ifndef TAS_INTERPOSE_H
#define TAS_INTERPOSE_H

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "tas/app.h"

#define LT_MAX_FD 65536
#define LT_MAX_OPTS 16

/* libc's implementations, resolved with dlsym(RTLD_NEXT). */
struct libc_fns {
    int (*socket)(int, int, int);
    int (*bind)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*getsockname)(int, struct sockaddr *, socklen_t *);
    int (*getpeername)(int, struct sockaddr *, socklen_t *);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*shutdown)(int, int);
    int (*close)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
                   const sigset_t *);
    int (*epoll_create1)(int);
    int (*epoll_ctl)(int, int, int, struct epoll_event *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*fstat)(int, struct stat *);
    int (*fstat64)(int, struct stat64 *);
    int (*fstatat)(int, const char *, struct stat *, int);
    int (*fstatat64)(int, const char *, struct stat64 *, int);
    int (*statx)(int, const char *, int, unsigned int, struct statx *);
    ssize_t (*sendfile)(int, int, off_t *, size_t);
    ssize_t (*sendfile64)(int, int, off64_t *, size_t);
    pid_t (*fork)(void);
    int (*close_range)(unsigned int, unsigned int, int);
    FILE *(*fdopen)(int, const char *);
    int (*fileno)(FILE *);
    int (*fileno_unlocked)(FILE *);
};
extern struct libc_fns real;
void libc_real_init(void);
/* Wrappers may run before constructors (other libraries' initialisers). */
#define REAL(fn) (real.close != NULL ? real.fn : (libc_real_init(), real.fn))

/* Per-connection state.  Payload goes through the core's struct tas_rx and
 * struct tas_tx, as in tas/app.py's Flow. */
struct lt_flow {
    uint32_t id;
    int opened;                /* accepted/connected: offsets below are valid */
    int dead;                  /* closed by us: its data is discarded */
    int handed;                /* handed over by a NEWCONN, not yet accepted */
    int est_early;             /* established, its NEWCONN not read yet */
    int closed_early;          /* CONN_CLOSED came before its TAS_ARX_NEWCONN */
    int moved;                 /* handed over, then moved to another process
                                  (TAS_CTL_FL_MOVED): its data is not ours to release */
    int quiet_closed;          /* closed with TAS_ATX_FL_CLOSED, no message */
    struct tas_rx rx;
    struct tas_tx tx;
    int rx_fin, reset;
    int fp_reset;              /* reset told by the fast path (TAS_ARX_FL_RESET), not
                                  (yet) by a CONN_CLOSED: closed quietly like an open one */
    uint64_t in_seq, out_seq;  /* events that may make it readable/writable */
    struct lt_flow *next;      /* hash chain */
};

/* LT_CONNECTING: a connect was sent, its CONN_OPENED has not arrived. */
enum lt_kind { LT_NEW, LT_CONNECTING, LT_LISTEN, LT_CONN };

struct lt_handed;

struct lt_sock {
    int refs;                  /* fd numbers (dup) pointing here */
    uint64_t gen;              /* unique id: epoll entries detect reuse */
    enum lt_kind kind;
    int nonblock;
    int so_error;
    int hup;                   /* failed connect not yet reported: Linux's
                                  closed socket with both directions shut */
    int connect_unreported;    /* connect finished (either way) since the
                                  last connect(): the next one reports it */
    uint64_t in_seq, out_seq;  /* as lt_flow's, for the socket itself */
    int shut_rd, shut_wr;
    int linger_rst;            /* SO_LINGER on with 0 s: close resets */
    int rejoin;                /* a listener inherited over fork, not yet
                                  joined by this process (prefork workers) */
    int listen_shut;           /* a listener shut down (shutdown SHUT_RD):
                                  closed in the daemon, accept fails EINVAL */
    uint32_t backlog;
    uint64_t join_key;         /* a listener's port group key (LISTEN reply's
                                  opaque): a forked worker proves with it that
                                  it inherited the listener, whatever its uid */
    uint32_t local_ip, remote_ip;      /* host byte order */
    uint16_t local_port, remote_port;
    int family;                /* AF_INET, or AF_INET6 taken over (sock_inet6.c) */
    int v6only, reuseaddr, reuseport;  /* options TAS itself answers for */
    int64_t rcvtimeo_us, sndtimeo_us;  /* SO_RCVTIMEO/SO_SNDTIMEO, 0: none */
    /* What a move to the kernel's stack (sock_to_kernel.c) replays: the
     * options set so far and the address bound */
    struct lt_opt { int level, name; socklen_t len; uint8_t val[24]; } opts[LT_MAX_OPTS];
    int nopts, opts_lost;
    struct sockaddr_storage bound;
    socklen_t bound_len;
    int kernel_fd;             /* a listener's kernel twin on the same address
                                  (listen_kernel.c), or -1 */
    uint32_t listener_id;
    uint32_t pending;          /* NEWCONN events not yet accepted */
    int accept_asked;          /* ACCEPT sent once: the daemon knows we accept */
    struct lt_handed *handed_head, *handed_tail;   /* listen_handoff.c */
    uint64_t *accept_ctr;      /* in the segment: connections accepted here */
    uint32_t conn_local_ip;    /* what TAS_ARX_NEWCONN leaves out (LISTEN reply) */
    uint32_t conn_rx_size, conn_tx_size;
    struct lt_flow *flow;
    struct lt_sock *next_listener;
    /* fork (fork_child.c, sock_claim.c): the children forked while this
     * connection was open (the newest LT_FORK_PIDS; its close waits for
     * them), and in a child the parent's flow id + 1 of an inherited
     * connection not taken over yet (kind LT_NEW until its first use) */
#define LT_FORK_PIDS 4
    pid_t fork_pids[LT_FORK_PIDS];
    uint32_t claim_flow;
    uint32_t fork_seen;        /* fork_child.c: counted in this child's marker */
};

/* The shim's files in layers, each calling only those above it in this list
 * (tests/test_call_graph.py checks it): fd_table, flow_table, conn_open,
 * flow_state (the engine), sock_close, sock_inet6, sock_setup/sock_connect,
 * sock_ready, sock_io, then the interposed calls (*_calls.c, fork_child.c).
 *
 * fd_table.c: global state, lock, lazy attach. */
extern struct tas_app *lt_app;
extern struct lt_sock *lt_fds[LT_MAX_FD];
extern struct lt_sock *lt_listeners;
void lt_lock(void);
void lt_unlock(void);
int lt_attach(void);           /* with the lock held: 1 if TAS is usable */
int lt_attach_refused(void);   /* ... 0 and TAS_REQUIRE_NVM forbids kernel sockets */
static inline struct lt_sock *lt_sock_of(int fd)
{
    return fd >= 0 && fd < LT_MAX_FD ? __atomic_load_n(&lt_fds[fd], __ATOMIC_ACQUIRE) : NULL;
}
int lt_fd_install(struct lt_sock *s, int cloexec);     /* new fd number or -1 */
void lt_fd_map(int fd, struct lt_sock *s);
void lt_fd_moved(int fd, uint64_t gen);
uint64_t lt_fd_moved_gen(int fd);
struct lt_sock *lt_sock_new(void);
/* Pin the TAS socket behind fd for the length of a call (NULL: not ours).
 * A close() by another thread meanwhile then drops only the fd number, as
 * on Linux, where a blocked recv keeps its file; the socket goes when the
 * last call on it returns.  lt_sock_done releases it and returns r with
 * errno kept. */
struct lt_sock *lt_sock_hold(int fd);
/* The new kernel fd nfd (reserved, or from dup/F_DUPFD of a TAS fd) now
 * also names s; closes it if beyond the table. */
int lt_dup_result(struct lt_sock *s, int nfd);
/* fork_child.c: drop the parent's attachment (then flows, then sleepers). */
void lt_attach_forget(void);
/* A forked child's marker fd and how many inherited connections it covers;
 * one of them taken over or closed (the marker goes with the last). */
#define LT_FORK_MARKER "libtas-fork"   /* its memfd name (tas/slowpath/fork_conns.py) */
void lt_fork_marker_keep(int fd, int pending);
int lt_fork_marker_fd(void);   /* -1: none */
void lt_claim_pending_done(void);

/* sock_claim.c (with the lock held): a forked child's first use of an
 * inherited connection takes it over (TAS_CTL_CLAIM); 0, or -errno and the
 * socket stays unconnected.  A no-op for any other socket. */
int lt_claim(struct lt_sock *s);

/* flow_table.c: flows by id. */
struct lt_flow *lt_flow_get(uint32_t id);             /* find or create */
void lt_flow_open(struct lt_flow *f, const struct tas_ctl_msg *m);
void lt_flow_forget(struct lt_flow *f);
/* Apply one notification to a flow. */
void lt_flow_notify(struct lt_flow *f, const struct tas_arx *e);
void lt_flows_forget_all(void);

/* conn_open.c: s becomes the connection described by CONN_OPENED m; the
 * connects in flight, completed by their CONN_OPENED (lt_connect_done). */
void lt_conn_open(struct lt_sock *s, const struct tas_ctl_msg *m);
struct lt_pending_connect;
struct lt_pending_connect *lt_connect_pending_new(void);   /* NULL: ENOMEM */
void lt_connect_pending_add(struct lt_pending_connect *p, uint32_t req_id, struct lt_sock *s);
void lt_connect_done(const struct tas_ctl_msg *m);
/* The fast path's TAS_ARX_OPENED: the same as its CONN_OPENED. */
void lt_connect_opened(const struct tas_arx *e);
/* s is being freed while its connect is pending. */
void lt_connect_orphan(struct lt_sock *s);

/* flow_state.c: the engine: notifications and events, requests, blocking. */
int lt_progress(void);
/* tas_app_request, then the events that arrived meanwhile. */
int lt_request(struct tas_ctl_msg *m);
/* 1 if the last lt_wait slept its whole slice (LT_MAX_SLEEP_MS) unwoken. */
int lt_wait_slept_out(void);
void lt_wait_forget(void);
int lt_wait_fd(void);           /* the sleepers' eventfd, or -1 */
/* listen_handoff.c: connections handed over with NEWCONN (lock held). */
void lt_handoff_arrived(const struct tas_ctl_msg *m);
void lt_handoff_established(uint32_t flow_id);
void lt_handoff_fast(const struct tas_arx *e);   /* a TAS_ARX_NEWCONN entry */
void lt_handoff_moved(uint32_t flow_id);         /* CONN_CLOSED with TAS_CTL_FL_MOVED */
void lt_handoff_closed_early(uint32_t flow_id);  /* CONN_CLOSED for a flow not known */
int lt_handoff_closed(uint32_t flow_id);   /* 1: dropped before it was acceptable */
int lt_handoff_pop(struct lt_sock *s, struct tas_ctl_msg *out);  /* 1: *out taken */
void lt_handoff_reset_all(struct lt_sock *s);
void lt_handoff_forget(struct lt_sock *s);
void lt_handoff_counter(struct lt_sock *s, const struct tas_ctl_msg *listen_reply);
/* Grows with every event that may make s readable (EPOLLIN in events) or
 * writable (EPOLLOUT): what edge-triggered epoll entries wait for. */
uint64_t lt_activity(struct lt_sock *s, uint32_t events);
/* Sleep until TAS may have news or a kernel fd in kfds has an event (kernel
 * poll semantics, lock released meanwhile).  Returns the kernel fds ready,
 * 0 if TAS news arrived or the timeout passed, -1 with errno (EINTR). */
int lt_wait(struct pollfd *kfds, nfds_t n, int timeout_ms);
/* 1 once the daemon has gone (stopped, killed: its control connection
 * ended); said once on stderr.  TAS connections fail with ENETDOWN then. */
int lt_daemon_lost(void);
/* With the lock held: notice a dead daemon (its control socket) at most
 * every 10 ms, for calls that do not wait (sock_io.c). */
void lt_check_daemon(void);
/* Ms left until deadline_ns (monotonic), -1 for no deadline. */
int64_t lt_now_ns(void);
int lt_ms_left(int64_t deadline_ns);
/* The deadline of a blocking call under SO_RCVTIMEO/SO_SNDTIMEO timeo_us
 * (0: none, -1 returned). */
int64_t lt_deadline(int64_t timeo_us);
/* With the lock held: one sleep of a blocking socket call (recv, send,
 * accept, connect) that found nothing to do, until deadline_ns (-1: none)
 * or an event on the kernel fds kfds (as lt_wait).  > 0: kernel fds ready;
 * 0: look again; -EAGAIN: the deadline passed (Linux's answer when
 * SO_RCVTIMEO/SO_SNDTIMEO runs out); -EINTR: a signal handler ran, unless
 * no deadline is set and every handler that could run has SA_RESTART (the
 * kernel restarts the call then); -ENETDOWN: the daemon is gone. */
int lt_wait_call(struct pollfd *kfds, nfds_t n, int64_t deadline_ns);

/* sock_close.c: drop a reference; at zero close the flow/listener. */
void lt_sock_unref(struct lt_sock *s);
/* With the lock held: shutdown(SHUT_RD or SHUT_RDWR) of a listener, as
 * Linux stops one: the daemon closes it (its queued connections are
 * reset), its kernel twin is shut (a thread in accept wakes), and accept
 * fails with EINVAL from now on. */
void lt_listen_shutdown(struct lt_sock *s);
ssize_t lt_sock_done(struct lt_sock *s, ssize_t r);

/* sock_connect.c: connect. */
/* I/O on a connecting socket: wait for the handshake (-EAGAIN if !block);
 * 0 once connected or -errno.  With the lock held. */
int lt_connect_wait_io(struct lt_sock *s, int block);

/* sock_setup.c: an inherited listener joins the port's listeners in the daemon on first
 * use (lock held): 0, or -errno. */
int lt_listener_rejoin(struct lt_sock *s);
/* sock_inet6.c: an address of s's family as host-order ip/port: 0, -errno,
 * or LT_IPV6_PROPER (an IPv6 address TAS cannot carry). */
#define LT_IPV6_PROPER 1
int lt_inet_addr_of(const struct lt_sock *s, const struct sockaddr *a, socklen_t len,
                    uint32_t *ip, uint16_t *port);
/* The IPv4 address of a (of s's family, checked by lt_inet_addr_of) made
 * 127.0.0.1, the port kept. */
void lt_loopback_addr(const struct lt_sock *s, struct sockaddr *a);
/* sock_to_kernel.c: turn the new (unconnected, not listening) TAS socket s
 * at fd into a kernel socket of its family, replaying its options and bind;
 * and record an option or a bind for that. */
int lt_to_kernel(int fd, struct lt_sock *s, const char *why);
int lt_record_option(struct lt_sock *s, int level, int name, const void *val, socklen_t len);
void lt_record_bind(struct lt_sock *s, const struct sockaddr *addr, socklen_t len);
/* A kernel socket of s's family with s's options and bind replayed; -errno. */
int lt_kernel_socket(struct lt_sock *s, int type_flags);

/* listen_kernel.c: the kernel twin of a TAS listener on a wildcard address,
 * so that the host's own clients (127.0.0.1) and other networks reach the
 * program as without the shim.  The last close of the listener closes it
 * (sock_close.c). */
void lt_listen_kernel_open(struct lt_sock *s);
int lt_listen_kernel_accept(struct lt_sock *s, struct sockaddr *addr, socklen_t *len, int flags);

/* sock_inet6.c: copy out an address of s's family the way the kernel does. */
void lt_fill_addr(const struct lt_sock *s, struct sockaddr *addr, socklen_t *len, uint32_t ip,
                  uint16_t port);
void lt_fill_addr_family(int family, struct sockaddr *addr, socklen_t *len, uint32_t ip,
                         uint16_t port);

/* fork_adopt.c: a descriptor of an inherited connection that this program
 * reaches through its relay (a kernel socketpair end, or a dup of one)
 * answers getsockname/getpeername (peer 0/1) and SO_DOMAIN, SO_TYPE,
 * SO_PROTOCOL as the TCP connection: 1 and the answer filled in, or 0 for
 * any other descriptor. */
int lt_relayed_addr(int fd, int peer, struct sockaddr *addr, socklen_t *len);
int lt_relayed_sockopt(int fd, int level, int name, void *val, socklen_t *len);

/* sock_ready.c */
short lt_ready(struct lt_sock *s);   /* POLLIN/POLLOUT/POLLHUP/POLLERR bits */

/* sock_io.c */
ssize_t lt_recv_iov(struct lt_sock *s, const struct iovec *iov, int n, int flags);
ssize_t lt_send_iov(struct lt_sock *s, const struct iovec *iov, int n, int flags);

/* poll_calls.c: poll over a mix of TAS and kernel fds. */
int lt_poll(struct pollfd *fds, nfds_t n, int timeout_ms);
/* Run call(arg) with sigmask applied (ppoll, pselect, epoll_pwait). */
int lt_with_sigmask(const sigset_t *mask, int (*call)(void *), void *arg);
int lt_timespec_ms(const struct timespec *ts);     /* NULL: -1 (forever) */

/* epoll_calls.c: forget the TAS registrations of a closed epoll fd. */
void lt_epoll_closed(int fd);

#endif
