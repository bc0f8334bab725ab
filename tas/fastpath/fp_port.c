#define _GNU_SOURCE
/* Bring-up and tear-down of the DPDK port, pools, rings and core contexts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <linux/bpf.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include "fp_internal.h"

/* Per-stage cycle counters go on a page of their own (the daemon's is
 * nearly full: KB_STATS_MAX). */
static void tas_fp_cycle_stats_init(struct fp_counters *c, struct kb_stats_page *s)
{
    static const char *const stages[FP_ST_N] = FP_STAGE_NAMES;
    for (int i = 0; i < FP_ST_N; i++) {
        char name[KB_STATS_NAME_LEN];
        snprintf(name, sizeof(name), "fp_cyc_%s", stages[i]);
        c->cyc[i] = kb_stats_counter(s, name);
        snprintf(name, sizeof(name), "fp_cyc_%s_n", stages[i]);
        c->cyc_n[i] = kb_stats_counter(s, name);
    }
}

void tas_fp_cycle_stats(struct tas_fp *fp, struct kb_stats_page *page)
{
    tas_fp_cycle_stats_init(&fp->ctr, page);
    kb_stats_set(kb_stats_counter(page, "tsc_hz"), fp->tsc_hz);
}

static void counters_init(struct fp_counters *c, struct kb_stats_page *s)
{
    static const char *const exc_names[TAS_EXC_NREASONS] = {
        "exc_arp", "exc_icmp", "exc_tcp_ctrl", "exc_other", "exc_tcp_flow"};
    c->rx_pkts = kb_stats_counter(s, "rx_pkts");
    c->rx_bytes = kb_stats_counter(s, "rx_bytes");
    c->tx_pkts = kb_stats_counter(s, "tx_pkts");
    c->tx_bytes = kb_stats_counter(s, "tx_bytes");
    c->tx_drops = kb_stats_counter(s, "tx_drops");
    c->tx_held = kb_stats_counter(s, "tx_held");
    c->drop_malformed = kb_stats_counter(s, "rx_drop_malformed");
    c->drop_not_ours = kb_stats_counter(s, "rx_drop_not_ours");
    for (int i = 0; i < TAS_EXC_NREASONS; i++)
        c->exc[i] = kb_stats_counter(s, exc_names[i]);
    c->exc_ring_full = kb_stats_counter(s, "exc_drop_ring_full");
    c->sp_tx_pkts = kb_stats_counter(s, "sp_tx_pkts");
    c->sleeps = kb_stats_counter(s, "fp_sleeps");
    c->wakeups = kb_stats_counter(s, "fp_wakeups");
    c->poll_sleeps = kb_stats_counter(s, "fp_poll_sleeps");   /* steps that found nothing */
    c->tcp_rx_segs = kb_stats_counter(s, "tcp_rx_segs");
    c->tcp_rx_bytes = kb_stats_counter(s, "tcp_rx_bytes");
    c->tcp_tx_segs = kb_stats_counter(s, "tcp_tx_segs");
    c->tcp_tx_bytes = kb_stats_counter(s, "tcp_tx_bytes");
    c->acks_sent = kb_stats_counter(s, "tcp_acks_sent");
    c->drop_bad_csum = kb_stats_counter(s, "rx_drop_bad_csum");
    c->rx_buf_full = kb_stats_counter(s, "tcp_rx_buf_full");
    c->ooo_accepted = kb_stats_counter(s, "tcp_ooo_accepted");
    c->ooo_dropped = kb_stats_counter(s, "tcp_ooo_dropped");
    c->rx_dup = kb_stats_counter(s, "tcp_rx_dup");
    c->dupacks = kb_stats_counter(s, "tcp_dupacks");
    c->fast_rexmits = kb_stats_counter(s, "tcp_fast_rexmits");
    c->rto_rexmits = kb_stats_counter(s, "tcp_rto_rexmits");
    c->rate_waits_rescaled = kb_stats_counter(s, "tcp_rate_waits_rescaled");
    c->app_bad_cmd = kb_stats_counter(s, "app_bad_cmd");
    c->app_cmd_flow_gone = kb_stats_counter(s, "app_cmd_flow_gone");
    c->notify_deferred = kb_stats_counter(s, "app_notify_deferred");
    c->probes_answered = kb_stats_counter(s, "tcp_probes_answered");
    c->app_bad_ctx = kb_stats_counter(s, "app_bad_ctx");
    c->rst_ignored = kb_stats_counter(s, "tcp_rst_out_of_window");
    c->challenge_acks = kb_stats_counter(s, "tcp_challenge_acks");
    c->challenge_limited = kb_stats_counter(s, "tcp_challenge_acks_limited");
    c->sack_blocks_sent = kb_stats_counter(s, "tcp_sack_blocks_sent");
    c->sack_rexmit_segs = kb_stats_counter(s, "tcp_sack_rexmit_segs");
    c->spurious_rtos = kb_stats_counter(s, "tcp_spurious_rtos");
    c->flows_added = kb_stats_counter(s, "flows_added");
    c->flows_moved = kb_stats_counter(s, "flows_moved");
    c->flows_removed = kb_stats_counter(s, "flows_removed");
    c->fault_dropped = kb_stats_counter(s, "fault_dropped");
    c->fault_duplicated = kb_stats_counter(s, "fault_duplicated");
    c->fault_reordered = kb_stats_counter(s, "fault_reordered");
    tas_fp_cycle_stats_init(c, NULL);  /* counted nowhere until a page is given */
}

/* The info page apps map read-only (core sleep flags, queue owners).  Our
 * writable mapping is made first; then the memfd is sealed so that nobody
 * holding it can resize it (SIGBUS here) or map it writable. */
static int info_init(struct tas_fp *fp)
{
    fp->info_fd = memfd_create("tas_info", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fp->info_fd < 0 || ftruncate(fp->info_fd, 4096) != 0)
        return -1;
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fp->info_fd, 0);
    if (m == MAP_FAILED)
        return -1;
    if (fcntl(fp->info_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE |
              F_SEAL_SEAL) != 0) {
        munmap(m, 4096);
        return -1;
    }
    fp->info = m;
    fp->info->magic = TAS_SHM_MAGIC;
    fp->info->version = TAS_SHM_VERSION;
    fp->info->ncores = fp->conf.ncores;
    fp->info->ip = fp->conf.ip;
    fp->info->prefix_len = fp->conf.prefix_len;
    fp->info->pin_apps = fp->conf.pin_apps ? 1 : 0;
    for (uint16_t i = 0; i < TAS_FP_MAX_CORES; i++) {
        fp->cores[i].sleeping = &fp->info->core_sleeping[i];
        fp->info->core_cpu[i] = -1;     /* each core's thread says where it runs */
    }
    return 0;
}

int tas_fp_info_fd(struct tas_fp *fp)
{
    return fp->info_fd;
}

static int find_port(uint16_t *port)
{
    uint16_t p;
    RTE_ETH_FOREACH_DEV(p) {
        *port = p;
        return 0;
    }
    fp_set_error("no DPDK port found (check the vdev/PCI device in the config)");
    return -1;
}

static bool is_driver(uint16_t port, const char *name)
{
    struct rte_eth_dev_info info;
    return rte_eth_dev_info_get(port, &info) == 0 && strcmp(info.driver_name, name) == 0;
}

/* The largest data room whose mbuf, with its mempool header, fits one page
 * (and keeps the odd cache-line count the mempool pads objects to). */
static uint32_t page_data_room(void)
{
    uint32_t page = (uint32_t)getpagesize();
    uint32_t room = page - RTE_PKTMBUF_HEADROOM - (uint32_t)sizeof(struct rte_mbuf);
    while (room > RTE_MBUF_DEFAULT_DATAROOM &&
           rte_mempool_calc_obj_size(sizeof(struct rte_mbuf) + RTE_PKTMBUF_HEADROOM + room, 0,
                                     NULL) > page)
        room -= RTE_CACHE_LINE_SIZE;
    return room;
}

/* Bytes of frame one mbuf holds, so that RX and TX never chain segments. */
static uint32_t frame_room(uint16_t port, uint16_t mtu)
{
    if (mtu <= 1500)
        return RTE_MBUF_DEFAULT_DATAROOM;
    /* net_af_xdp makes the mempool its UMEM and receives a frame into one
     * mbuf, which the kernel wants within a page (no multi-buffer in DPDK
     * 22.11's PMD); check_mtu refuses an MTU that does not fit. */
    if (is_driver(port, "net_af_xdp"))
        return page_data_room();
    /* Otherwise as big as an af_packet PACKET_MMAP frame slot (mtu + 128
     * rounded up to 4 KiB, tas/eal.py): that PMD refuses slots bigger than
     * an mbuf, and indexes slots as if blocks had no gaps. */
    return RTE_ALIGN_CEIL((uint32_t)mtu + 128, 4096u);
}

/* net_af_xdp: the kernel writes a received frame after its XDP headroom,
 * inside the mbuf's data room. */
static int check_af_xdp_mtu(struct tas_fp *fp)
{
    uint32_t room = fp->frame_room - XDP_PACKET_HEADROOM;
    if ((uint32_t)fp->conf.mtu + RTE_ETHER_HDR_LEN > room) {
        fp_set_error("dpdk.mtu = %u does not fit net_af_xdp's receive buffers (%u-byte "
                     "frames: one page less the mbuf and the XDP headroom)",
                     fp->conf.mtu, room);
        return -1;
    }
    return 0;
}

/* The device must carry dpdk.mtu; say so by name when it cannot. */
static int check_mtu(struct tas_fp *fp)
{
    struct rte_eth_dev_info info;
    int r = rte_eth_dev_info_get(fp->port, &info);
    if (r != 0) {
        fp_set_error("port %u: cannot read device info: %s", fp->port, rte_strerror(-r));
        return -1;
    }
    uint32_t frame = (uint32_t)fp->conf.mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
    fp->dev_mtu = fp->conf.mtu;
    fp->tx_mtu = fp->conf.mtu;
    if (strcmp(info.driver_name, "net_af_xdp") == 0 && check_af_xdp_mtu(fp) != 0)
        return -1;
    bool virtual = strcmp(info.driver_name, "net_tap") == 0 ||
                   strcmp(info.driver_name, "net_af_packet") == 0 ||
                   strcmp(info.driver_name, "net_memif") == 0;
    if (frame > info.max_rx_pktlen && virtual) {
        /* DPDK 22.11's tap, af_packet and memif PMDs report 1514-1522-byte
         * frames, but move whatever fits an mbuf (tap, memif: chained memif
         * buffers) or a PACKET_MMAP slot (sized in tas/eal.py).  The daemon
         * sets the kernel interfaces' MTU itself (tas/peer.py); two memif
         * daemons must be configured with the same dpdk.mtu. */
        fp->dev_mtu = 0;
        /* the tap PMD checks TX frames against DPDK's MTU, not the kernel's */
        if (strcmp(info.driver_name, "net_tap") == 0)
            fp->tx_mtu = RTE_MIN(fp->conf.mtu, RTE_ETHER_MTU);
        return 0;
    }
    if (fp->conf.mtu < info.min_mtu || fp->conf.mtu > info.max_mtu ||
        frame > info.max_rx_pktlen) {
        fp_set_error("dpdk.mtu = %u: device %s carries frames up to %u bytes (MTU %u..%u)",
                     fp->conf.mtu, info.driver_name, info.max_rx_pktlen, info.min_mtu,
                     info.max_mtu);
        return -1;
    }
    return 0;
}

static int port_configure(struct tas_fp *fp, bool rx_intr)
{
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.intr_conf.rxq = rx_intr ? 1 : 0;
    conf.rxmode.mtu = fp->dev_mtu;    /* 0: the driver's default */
    uint16_t nq = fp->conf.ncores;
    int r = rte_eth_dev_configure(fp->port, nq, nq, &conf);
    if (r != 0)
        return r;
    uint16_t rxd = fp->conf.rx_desc, txd = fp->conf.tx_desc;
    r = rte_eth_dev_adjust_nb_rx_tx_desc(fp->port, &rxd, &txd);
    if (r != 0)
        return r;
    int socket = rte_eth_dev_socket_id(fp->port);
    for (uint16_t q = 0; q < nq; q++) {
        r = rte_eth_rx_queue_setup(fp->port, q, rxd, socket, NULL, fp->pool);
        if (r != 0)
            return r;
        r = rte_eth_tx_queue_setup(fp->port, q, txd, socket, NULL);
        if (r != 0)
            return r;
    }
    return 0;
}

static int core_init(struct tas_fp *fp, uint16_t idx)
{
    struct fp_core *c = &fp->cores[idx];
    c->fp = fp;
    c->idx = idx;
    c->lcore = fp->conf.lcores[idx];
    c->intr_mask = 0;
    /* Our own eventfd for the slow path, and a datagram socketpair whose
     * other end apps get: an app can make its end blocking or fill it, but
     * never block our reads (MSG_DONTWAIT) or our eventfd. */
    int sv[2];
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->wake_fd < 0 || c->epfd < 0 ||
        socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    c->app_wake_rx = sv[0];
    c->app_wake_tx = sv[1];
    shutdown(c->app_wake_tx, SHUT_RD);   /* apps only send on it */
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->wake_fd};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wake_fd, &ev) != 0)
        return -errno;
    ev.data.fd = c->app_wake_rx;
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->app_wake_rx, &ev) != 0)
        return -errno;
    /* The queue's RX interrupt fd joins the epoll set of whichever core
     * serves the queue when that core blocks (fp_loop.c). */
    fp->rx_intr_fd[idx] = fp->rx_intr ? rte_eth_dev_rx_intr_ctl_q_get_fd(fp->port, idx) : -1;
    if (fp->rx_intr_fd[idx] < 0)
        fp->rx_intr = false;
    return 0;
}

static int check_conf(const struct tas_fp_conf *conf)
{
    if (conf->ncores == 0 || conf->ncores > TAS_FP_MAX_CORES) {
        fp_set_error("fast path cores: need 1..%d, got %u", TAS_FP_MAX_CORES, conf->ncores);
        return -1;
    }
    for (uint16_t i = 0; i < conf->ncores; i++) {
        unsigned l = conf->lcores[i];
        if (!rte_lcore_is_enabled(l) || l == rte_get_main_lcore()) {
            fp_set_error("fast path core %u is not a worker lcore of this EAL", l);
            return -1;
        }
    }
    if (conf->mtu < 576 || conf->mtu > 9000) {
        fp_set_error("MTU must be 576..9000, got %u", conf->mtu);
        return -1;
    }
    if (conf->max_flows > TAS_FLOW_MAX) {
        fp_set_error("max_flows must be 1..%d, got %u", TAS_FLOW_MAX, conf->max_flows);
        return -1;
    }
    if (conf->poll_sleep_us == 0 || conf->poll_sleep_max_us < conf->poll_sleep_us ||
        conf->poll_sleep_max_us > 1000000) {
        fp_set_error("polling sleeps: need 1 <= poll_sleep_us (%u) <= poll_sleep_max_us (%u) "
                     "<= 1000000", conf->poll_sleep_us, conf->poll_sleep_max_us);
        return -1;
    }
    if (!rte_is_power_of_2(conf->sp_ring_size)) {
        fp_set_error("slow path ring size must be a power of two, got %u", conf->sp_ring_size);
        return -1;
    }
    return 0;
}

struct tas_fp *tas_fp_create(const struct tas_fp_conf *conf, struct kb_stats_page *stats)
{
    if (check_conf(conf) != 0)
        return NULL;
    struct tas_fp *fp = rte_zmalloc("tas_fp", sizeof(*fp), RTE_CACHE_LINE_SIZE);
    if (fp == NULL) {
        fp_set_error("out of DPDK memory for the fast path context");
        return NULL;
    }
    fp->conf = *conf;
    fp->sp_fd = -1;
    fp->info_fd = -1;
    /* Before the first goto fail: tas_fp_destroy closes every core's fds,
     * and zeroed memory would make it close fd 0 when we fail early. */
    for (uint16_t i = 0; i < TAS_FP_MAX_CORES; i++)
        fp->cores[i].wake_fd = fp->cores[i].app_wake_rx = fp->cores[i].app_wake_tx =
            fp->cores[i].epfd = -1;
    fp->tsc_hz = rte_get_tsc_hz();
    fp->tsc_per_us = fp->tsc_hz / 1000000;
    fp->delack_cycles = (uint64_t)fp->conf.delack_us * fp->tsc_per_us;
    counters_init(&fp->ctr, stats);
    if (info_init(fp) != 0) {
        fp_set_error("cannot create the info page: %s", strerror(errno));
        goto fail;
    }
    if (fp_flows_init(fp) != 0) {
        fp_set_error("cannot allocate the flow table: %s", rte_strerror(rte_errno));
        goto fail;
    }
    if (fp_listeners_init(fp) != 0) {
        fp_set_error("cannot allocate the listener table: %s", rte_strerror(rte_errno));
        goto fail;
    }
    if (fp_syn_sweep_init(fp) != 0) {
        fp_set_error("cannot allocate the slow path's list of opened connections");
        goto fail;
    }
    if (fp_connect_init(fp) != 0 || fp_neigh_init(fp) != 0) {
        fp_set_error("cannot allocate the connect tables: %s", rte_strerror(rte_errno));
        goto fail;
    }
    if (find_port(&fp->port) != 0)
        goto fail;
    fp->frame_room = frame_room(fp->port, conf->mtu);
    fp->pool = rte_pktmbuf_pool_create("tas_mbufs", conf->nb_mbufs, 256, 0,
                                       (uint16_t)(RTE_PKTMBUF_HEADROOM + fp->frame_room),
                                       rte_socket_id());
    fp->exc_ring = rte_ring_create("tas_exc", conf->sp_ring_size, rte_socket_id(), RING_F_SC_DEQ);
    fp->sp_tx_ring = rte_ring_create("tas_sptx", conf->sp_ring_size, rte_socket_id(),
                                     RING_F_SP_ENQ | RING_F_SC_DEQ);
    fp->inject_ring = rte_ring_create("tas_inject", conf->sp_ring_size, rte_socket_id(),
                                      RING_F_SP_ENQ | RING_F_SC_DEQ);
    fp->sp_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fp->pool == NULL || fp->exc_ring == NULL || fp->sp_tx_ring == NULL ||
        fp->inject_ring == NULL || fp->sp_fd < 0) {
        fp_set_error("cannot allocate mbuf pool or rings: %s", rte_strerror(rte_errno));
        goto fail;
    }
    if (check_mtu(fp) != 0)
        goto fail;
    /* Prefer RX interrupts for idle blocking; fall back to polling sleeps. */
    fp->rx_intr = !conf->no_rx_intr && port_configure(fp, true) == 0;
    if (!fp->rx_intr) {
        int r = port_configure(fp, false);
        if (r != 0) {
            fp_set_error("port %u configuration failed: %s", fp->port, rte_strerror(-r));
            goto fail;
        }
    }
    struct rte_ether_addr mac;
    memcpy(mac.addr_bytes, conf->mac, sizeof(mac.addr_bytes));
    rte_eth_dev_default_mac_addr_set(fp->port, &mac); /* best effort: not all PMDs can */
    int r = rte_eth_dev_start(fp->port);
    if (r != 0) {
        fp_set_error("port %u start failed: %s", fp->port, rte_strerror(-r));
        goto fail;
    }
    fp->started = true;
    rte_eth_promiscuous_enable(fp->port);
    for (uint16_t i = 0; i < conf->ncores; i++) {
        if (core_init(fp, i) != 0) {
            fp_set_error("core %u: cannot create eventfd/epoll", i);
            goto fail;
        }
    }
    fp_scaling_init(fp);
    return fp;
fail:
    tas_fp_destroy(fp);
    return NULL;
}

int tas_fp_port_id(struct tas_fp *fp)
{
    return fp->port;
}

int tas_fp_tx_mtu(struct tas_fp *fp)
{
    return fp->tx_mtu;
}

int tas_fp_rx_intr(struct tas_fp *fp)
{
    return fp->rx_intr;
}

int tas_fp_start(struct tas_fp *fp)
{
    fp->stop = 0;
    for (uint16_t i = 0; i < fp->conf.ncores; i++) {
        int r = rte_eal_remote_launch(fp_core_loop, &fp->cores[i], fp->cores[i].lcore);
        if (r != 0) {
            fp_set_error("cannot launch fast path on lcore %u", fp->cores[i].lcore);
            tas_fp_stop(fp);
            return -1;
        }
    }
    return 0;
}

void tas_fp_stop(struct tas_fp *fp)
{
    fp->stop = 1;
    for (uint16_t i = 0; i < fp->conf.ncores; i++) {
        uint64_t one = 1;
        ssize_t r = write(fp->cores[i].wake_fd, &one, sizeof(one));
        (void)r;
    }
    for (uint16_t i = 0; i < fp->conf.ncores; i++)
        rte_eal_wait_lcore(fp->cores[i].lcore);
}

void tas_fp_core_load(struct tas_fp *fp, uint16_t core, uint64_t *busy, uint64_t *total)
{
    *busy = fp->cores[core].busy_cycles;
    *total = fp->cores[core].total_cycles;
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

void tas_fp_destroy(struct tas_fp *fp)
{
    if (fp == NULL)
        return;
    if (fp->started) {
        rte_eth_dev_stop(fp->port);
        rte_eth_dev_close(fp->port);
    }
    for (uint16_t i = 0; i < fp->conf.ncores; i++) {
        close_fd(fp->cores[i].wake_fd);
        close_fd(fp->cores[i].app_wake_rx);
        close_fd(fp->cores[i].app_wake_tx);
        close_fd(fp->cores[i].epfd);
    }
    close_fd(fp->sp_fd);
    close_fd(fp->info_fd);
    if (fp->info != NULL)
        munmap(fp->info, 4096);
    fp_flows_free(fp);
    fp_listeners_free(fp);
    fp_syn_sweep_free(fp);
    fp_connect_free(fp);
    fp_neigh_free(fp);
    rte_ring_free(fp->exc_ring);
    rte_ring_free(fp->sp_tx_ring);
    rte_ring_free(fp->inject_ring);
    rte_mempool_free(fp->pool);
    rte_free(fp);
}
