"""TCP connection control in the slow path: handshakes, teardown, resets,
retransmission timeouts and window probes.  Established data transfer is the
fast path's; this module installs a flow with its SYN-ACK (passive open: the
fast path completes it on the final ACK) or once the SYN-ACK arrives (active
open), and removes it when both sides have closed (or on reset)."""
import collections
import errno
import itertools
import os
import random
import sys
import time
from dataclasses import dataclass, field

from tas.config import port_range
from tas.slowpath.connector import Connectors
from tas.slowpath.packets import ETH_P_IP, Eth, IPv4
from tas.slowpath.tcp_packets import (ACK, CWR, ECE, FIN, RST, SYN, Tcp, TcpOptions, frame,
                                      seq_lt)

SYN_SENT, SYN_RCVD, ESTABLISHED, CLOSED = "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSED"
# Retransmission timeouts in a row, without progress, after which a
# connection whose app has exited is reset (Linux's tcp_orphan_retries
# default): nobody is left to give up on it otherwise.
ORPHAN_RETRIES = 8
# The smallest MSS a peer gets (Linux's tcp_min_snd_mss; fp_tcp_syn.c's).
MIN_SND_MSS = 48
# Under churn a tick is a few hundred microseconds of Python on a CPU the
# apps and their peers share; the scheduler (EEVDF) lets it run its whole
# slice, so a client woken meanwhile waited for all of it (the p99 of a
# short connection's first reply).  The tick (and sync_fast) gives the CPU
# up (sched_yield) after every YIELD_EVERY connections, so the others run
# at once and the tick fills the gaps where they wait.  At most YIELD_MAX
# times a pass: next to a busy CPU-bound process every yield may cost a
# time slice of waiting, and a tick over thousands of connections must not
# take thousands of them.
YIELD_EVERY = 8
YIELD_MAX = 16
# Parked flows (tas_fp_flows_woken) read back per call.
WOKEN_BATCH = 256
# Connections the fast path opened, per sweep call (include/tas/syn_sweep.h):
# handed to us, and closed in C with something for us to note.
SWEEP_BATCH = 256


@dataclass(eq=False)
class Listener:
    id: int
    app: object
    ctx: int
    port: int
    backlog: int
    ready: list = field(default_factory=list)     # established, not yet accepted
    half_open: int = 0
    # Prefork servers: the listeners of one port (the first one's list,
    # shared by all) and whether this one takes connections yet.  A listener
    # made before a fork takes them once its process asks to accept (an
    # nginx master never does); one a forked worker joins with takes them
    # at once.
    group: list = field(default_factory=list)
    accepting: bool = False
    rr: int = 0                 # round-robin position (the first one's)
    # Hand-over listeners (libtas): NEWCONN carries the connection, sent
    # with the SYN-ACK; the fast path tells the app when the final ACK
    # comes, and the app accepts it locally, counting it in a uint64 at
    # accept_off in its segment.  Established ones it has not counted yet
    # are in the backlog as `ready` ones are.
    handoff: bool = False
    handed: int = 0             # established here
    accept_off: int = -1
    fp_slot: int = -1           # in the fast path's listener table (synfast.h)
    reuse: bool = False         # SO_REUSEADDR: its connections do not hold the port
    join_key: int = 0           # the port group's: proves a joining worker inherited it
    connector: bool = False     # an app's connects (connector.py), not a port's


@dataclass(eq=False, slots=True)    # thousands a second under churn: cheap to make
class Conn:
    key: tuple                  # (peer ip bytes, local port, peer port)
    app: object
    ctx: int
    state: str
    iss: int
    peer_mac: bytes = b""
    irs: int = 0
    listener: Listener | None = None
    app_knows: bool = False     # handed over at the SYN: the app hears of its end
    req_id: int = 0
    rx_off: int = 0
    tx_off: int = 0
    mss: int = 536
    snd_wscale: int = 0
    rcv_wscale: int = 0
    ts_ok: bool = False
    sack_ok: bool = False
    ts_recent: int = 0
    ecn: bool = False
    snd_wnd: int = 0
    flow_id: int = -1
    retries: int = 0
    next_retry: float = 0.0
    app_closed: bool = False
    peer_closed_first: bool = False
    fin_wait2_since: float = 0.0
    last_una: int = 0
    una_since: float = 0.0
    rto_backoff: int = 0
    rto_fired_us: int | None = None   # fast-path clock of our last timeout
    activity: tuple = ()       # (bytes sent, next byte expected) at last change
    active_since: float = 0.0
    orphan: bool = False        # closed by an app that has exited since
    held: bool = False          # its 4-tuple's SYNs come our way (no flow now)
    origin: Listener | None = None    # the listener it came in on (buffer recycling)
    orphan_timeouts: int = 0
    cc: object = None
    parked: bool = False        # idle: the tick skips it until the fast path
    park_tick: int = 0          # ... sees it change (TcpManager._park)
    fork_holds: dict = None     # its app closed it with children that may hold it:
                                # pidfd -> pid of each (fork_conns.py)


def _u32(x):
    return x & 0xFFFFFFFF


class TcpManager:
    def __init__(self, cfg, fp, stats, arp, send, quota, now=time.monotonic):
        self.cfg, self.fp, self.stats, self.arp = cfg, fp, stats, arp
        arp.on_resolved = self.arp_resolved    # SYNs waiting for a MAC go then
        self.quota = quota        # per-uid caps on flows, buffers, listeners
        self.alloc_refused = ""   # the key that refused _alloc_buffers' last None
        self.ffi, self.lib = fp.ffi, fp.lib
        self.send_frame = send
        self.now = now
        self.my_mac = bytes(int(x, 16) for x in cfg.tas.mac.split(":"))
        self.my_ip = bytes(int(x) for x in cfg.tas.ip.split("."))
        self.conns = {}
        # The tick's work list: connections that may need it, in insertion
        # order (a dict as an ordered set).  An established connection found
        # idle is parked instead (in the fast path's list and `parked`,
        # by flow id) until the fast path sees it change, Python changes it
        # (close, app exit), or its timestamp refresh is due (`ts_watch`,
        # parked ones with timestamps, in park order).  An idle connection
        # then costs the tick a compare in C, not microseconds of Python.
        self.awake = {}
        self.parked = {}
        self.ts_watch = {}
        self.fw2_watch = {}       # parked in FIN_WAIT2, in park order (its timeout)
        self.tick_no, self.tick_at = 0, now()    # the last tick's number and time
        self._woken = self.ffi.new(f"uint32_t[{WOKEN_BATCH}]")
        # Flags under which the tick has work on a flow: a close in progress
        # (FIN to send, sent or acknowledged, the app's close, unread data to
        # reset for), a reset, a handshake, a window probe, SACK recovery.
        # RXFIN alone is CLOSE_WAIT: nothing to do until the app closes.
        lib = self.lib
        self._busy_flags = (lib.TAS_FLF_TXFIN | lib.TAS_FLF_TXFIN_SENT |
                            lib.TAS_FLF_TXFIN_ACKED | lib.TAS_FLF_APP_CLOSED |
                            lib.TAS_FLF_RX_DISCARD | lib.TAS_FLF_RESET | lib.TAS_FLF_SYNRCVD |
                            lib.TAS_FLF_PROBE | lib.TAS_FLF_SACK_RECOV)
        self._quiet_reset = lib.TAS_FLF_QUIET | lib.TAS_FLF_RESET
        # ... but FIN_WAIT2 (our FIN acknowledged, none from the peer yet) has
        # only its tcp.fin_wait2_ms timer: a deadline (fw2_watch), no visits.
        self._fin_flags = (lib.TAS_FLF_TXFIN | lib.TAS_FLF_TXFIN_SENT |
                           lib.TAS_FLF_TXFIN_ACKED | lib.TAS_FLF_APP_CLOSED)
        self.listeners = {}       # port -> Listener
        self.listener_ids = {}    # id -> Listener
        self.time_wait = {}       # key -> (expiry, snd_nxt, rcv_nxt, peer_mac)
        # (expiry, key) in expiry order (one fixed duration): expiring costs
        # only the entries that are due, not a scan of thousands per tick
        # under connection churn.
        self.tw_expiry = collections.deque()
        self.tw_held = set()      # TIME_WAIT pairs the fast path's table had no room for
        self.next_listener_id = 1
        self.cc_factory = None    # set by the slow path (congestion control)
        tcfg = cfg.tcp
        self.handshake_timeout = tcfg.handshake_timeout_ms / 1000
        # Linux's choice (tcp_select_initial_window): the smallest scale that
        # lets the window cover the whole receive buffer.
        self.rcv_wscale = min(14, max(0, cfg.buffers.rx_buf.bit_length() - 1 - 15))
        # SYNs the fast path answers itself (include/tas/synfast.h): what its
        # SYN-ACKs offer, and per hand-over listener a pool of this many
        # flows' buffers provisioned ahead.
        self.syn_pool = tcfg.syn_pool
        self.connect_pool = tcfg.connect_pool     # an app's connector's (connector.py)
        self.syn_stats = getattr(fp, "syn_stats", None) or stats
        sc = self.ffi.new("struct tas_syn_conf *")
        sc.mss, sc.syn_window = tcfg.mss, min(cfg.buffers.rx_buf, 65535)
        sc.rcv_wscale, sc.ecn = self.rcv_wscale, 1 if tcfg.ecn else 0
        sc.rx_size, sc.tx_size = cfg.buffers.rx_buf, cfg.buffers.tx_buf
        self.ephemeral = port_range(tcfg.ephemeral_ports)
        sc.port_lo, sc.port_hi = self.ephemeral.start, self.ephemeral.stop - 1
        sc.tw_reuse = 1 if tcfg.time_wait_reuse else 0
        self.lib.tas_fp_syn_configure(fp.handle, sc)
        self.connectors = Connectors(self, Listener)
        # The fast path's connects take the peer's MAC from its table.
        arp.on_change = self._neighbour
        self._sweep = self.ffi.new("struct tas_syn_sweep *")
        self._sweep_open = self.ffi.new(f"struct tas_syn_pending[{SWEEP_BATCH}]")
        self._sweep_done = self.ffi.new(f"struct tas_syn_swept[{SWEEP_BATCH}]")
        self._sweep.open, self._sweep.open_max = self._sweep_open, SWEEP_BATCH
        self._sweep.done, self._sweep.done_max = self._sweep_done, SWEEP_BATCH
        self.fast_pending = 0     # opened by the fast path, in the sweep's list
        self._slice_begin()
        self._synbuf = self.ffi.new("struct tas_syn_buf *")

    # ---- packets -----------------------------------------------------------

    def send_tcp(self, conn_or_key, peer_mac, tcp, tos=0):
        key = conn_or_key.key if isinstance(conn_or_key, Conn) else conn_or_key
        self.send_frame(frame(self.my_mac, peer_mac, self.my_ip, key[0], tcp, tos))

    def _ts(self):
        # The fast path's clock: a peer drops segments whose timestamp goes
        # backwards (PAWS), so handshake and data must share one clock.
        return self.lib.tas_fp_ts_now(self.fp.handle)

    def _syn_options(self, conn, peer_opts=None):
        o = TcpOptions(mss=self.cfg.tcp.mss)
        if peer_opts is None or peer_opts.wscale is not None:
            o.wscale = self.rcv_wscale
        if peer_opts is None or peer_opts.ts is not None:
            o.ts = (self._ts(), peer_opts.ts[0] if peer_opts and peer_opts.ts else 0)
        o.sack_ok = peer_opts is None or peer_opts.sack_ok
        return o

    def _send_syn(self, conn):
        flags = SYN | ((ECE | CWR) if self.cfg.tcp.ecn else 0)
        self.send_tcp(conn, conn.peer_mac, Tcp(conn.key[1], conn.key[2], conn.iss, 0, flags,
                                               min(self.cfg.buffers.rx_buf, 65535),
                                               self._syn_options(conn)))
        self.stats.add("tcp_syn_sent")

    def _send_synack(self, conn, peer_opts):
        flags = SYN | ACK | (ECE if conn.ecn else 0)
        self.send_tcp(conn, conn.peer_mac, Tcp(conn.key[1], conn.key[2], conn.iss,
                                               conn.irs + 1, flags,
                                               min(self.cfg.buffers.rx_buf, 65535),
                                               self._syn_options(conn, peer_opts)))

    def _send_rst_for(self, ip, eth_src, tcp):
        key = (ip.src, tcp.dport, tcp.sport)
        if tcp.flags & ACK:
            rst = Tcp(tcp.dport, tcp.sport, tcp.ack, 0, RST, 0)
        else:
            seg_len = len(tcp.payload) + (1 if tcp.flags & SYN else 0) + (1 if tcp.flags & FIN else 0)
            rst = Tcp(tcp.dport, tcp.sport, 0, tcp.seq + seg_len, RST | ACK, 0)
        self.send_tcp(key, eth_src, rst)
        self.stats.add("tcp_rst_sent")

    def _reinject(self, eth, ip, tcp_bytes):
        """Hand a segment of an installed flow to the fast path: it reached us
        before the flow was installed, or it carries IP options (which the
        fast path leaves to us; the TCP checksum does not cover them)."""
        f = Eth(eth.dst, eth.src, ETH_P_IP,
                IPv4(ip.src, ip.dst, ip.proto, tcp_bytes, ip.ttl, ip.ident, ip.tos).pack()).pack()
        if self.lib.tas_fp_sp_inject(self.fp.handle, f, len(f)) == 0:
            self.stats.add("tcp_reinjected")
        else:
            self.stats.add("tcp_reinject_drops")

    def handle(self, eth, ip, tcp_bytes_frame, reason=None):
        """A TCP segment the fast path passed up (ip: parsed IPv4).  reason
        TAS_EXC_TCP_FLOW: the flow's fast path already processed it (the
        peer's FIN, an exact RST); otherwise it found no installed flow."""
        tcp = Tcp.parse(ip)
        key = (ip.src, tcp.dport, tcp.sport)
        conn = self.conns.get(key)
        if conn is None and self.sync_fast():
            conn = self.conns.get(key)    # opened by the fast path a moment ago
        if conn is not None and conn.parked:
            self._wake(conn)
        if conn is not None and self._quietly_established(conn):
            self._establish(conn, None)   # before the tick saw it: catch up first
        if reason == self.lib.TAS_EXC_TCP_FLOW and conn is None:
            # The fast path took it (a FIN) and the connection finished
            # closing before we saw it: nothing left to do, surely no RST.
            self.stats.add("tcp_late_segments")
            return
        if (conn is not None and conn.state == ESTABLISHED and tcp.flags & SYN and
                not tcp.flags & (ACK | RST) and reason != self.lib.TAS_EXC_TCP_FLOW):
            # A new SYN for a connection closed both ways (the fast path
            # passes those up): finish the close now, as Linux enters
            # TIME_WAIT at once, and let TIME_WAIT decide.
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
            done = self.lib.TAS_FLF_RXFIN | self.lib.TAS_FLF_TXFIN_ACKED
            if f.flags & done == done:
                self._check_close(conn, f, self.now())
                conn = self.conns.get(key)
                if conn is not None:
                    self.stats.add("tcp_syn_dropped")
                    return
        if (conn is not None and conn.state == ESTABLISHED and
                reason == self.lib.TAS_EXC_TCP_FLOW and not tcp.flags & RST):
            # (new data for a closed connection comes this way: reset it now)
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
            self._app_closed_quietly(conn, f)
            if self._close_discards(conn, f):
                return
        if (conn is not None and conn.state == ESTABLISHED and
                reason != self.lib.TAS_EXC_TCP_FLOW):
            if self.lib.tas_fp_flow(self.fp.handle, conn.flow_id).flags & self.lib.TAS_FLF_RESET:
                # The peer reset it (_reset_quietly: kept for the app's close):
                # answered as for a connection that is gone, never sent
                # back to the fast path, which passes it up again.
                self.stats.add("tcp_segs_after_reset")
                if not tcp.flags & RST:
                    self._send_rst_for(ip, eth.src, tcp)
                return
            # Not taken by the fast path although the flow is installed: it
            # carries IP options, or it raced the flow's installation.
            self._reinject(eth, ip, ip.payload)
            return
        if tcp.flags & RST:
            if conn is not None and self._reset_acceptable(conn, tcp):
                self._on_reset(conn)
            elif conn is None and key in self.time_wait:
                tw = self.time_wait[key]
                if tcp.seq == tw[2]:
                    self._tw_del(key)         # as Linux (RFC 1337 not applied)
            else:
                self.stats.add("tcp_rst_ignored")
            return
        if conn is not None and conn.state == CLOSED:
            # Reset by the peer, not yet closed by the app: Linux has no
            # socket for it any more either.
            self._send_rst_for(ip, eth.src, tcp)
            return
        if conn is None:
            tw = self.time_wait.get(key)
            if tw is not None:
                if tcp.flags & FIN:   # our final ACK was lost: send it again
                    self.send_tcp(key, eth.src, Tcp(key[1], key[2], tw[1], tw[2], ACK, 0))
                    return
                if not (tcp.flags & SYN and not tcp.flags & ACK and seq_lt(tw[2], tcp.seq)
                        and tcp.dport in self.listeners):
                    return
                # A new SYN above the old connection's sequence space reuses
                # the port pair at once (RFC 6191 / Linux tcp_timewait_state_process).
                self._tw_del(key)
                self.stats.add("tcp_time_wait_reused")
            listener = self.listeners.get(tcp.dport)
            if listener is not None:
                listener = self._pick_listener(tcp.dport)
            if tcp.flags & SYN and not tcp.flags & ACK and listener is not None:
                self._passive_open(listener, key, eth, ip, tcp)
            else:
                self._send_rst_for(ip, eth.src, tcp)
            return
        if conn.state == SYN_SENT:
            self._on_synack(conn, eth, tcp)
        elif conn.state == SYN_RCVD:
            if tcp.flags & SYN and not tcp.flags & ACK:
                self._send_synack(conn, tcp.options)           # our SYN-ACK was lost
            elif reason == self.lib.TAS_EXC_TCP_FLOW:
                self._establish(conn, tcp)     # the fast path took the final ACK
            elif tcp.flags & ACK and tcp.ack == (conn.iss + 1) & 0xFFFFFFFF:
                # The final ACK came our way (IP options): complete it here.
                self._establish(conn, tcp)
                if tcp.payload or tcp.flags & FIN:
                    # The segment also carries data: let the fast path take it.
                    self.lib.tas_fp_sp_inject(self.fp.handle, tcp_bytes_frame,
                                              len(tcp_bytes_frame))
        # Established flows: the fast path already handled the segment (FIN);
        # the close state machine reads the flow's flags on the next tick.

    def _reset_acceptable(self, conn, tcp):
        """RFC 793/5961 checks for connections the fast path does not hold
        (an ESTABLISHED flow's RST arrives here only once the fast path found
        it exact)."""
        if conn.state == SYN_SENT:     # must acknowledge our SYN
            return bool(tcp.flags & ACK) and tcp.ack == (conn.iss + 1) & 0xFFFFFFFF
        if conn.state == SYN_RCVD:     # in the window we offered
            off = (tcp.seq - conn.irs - 1) & 0xFFFFFFFF
            return off < max(1, min(self.cfg.buffers.rx_buf, 65535))
        return True

    # ---- opening -----------------------------------------------------------

    def _negotiate(self, conn, opts, window):
        # at least Linux's tcp_min_snd_mss (48): a peer's MSS of 12 or less
        # with timestamps made ours 0 or less (fp_tcp_syn.c)
        peer_mss = max(opts.mss or 536, MIN_SND_MSS)
        conn.ts_ok = opts.ts is not None
        conn.sack_ok = opts.sack_ok
        conn.ts_recent = opts.ts[0] if opts.ts else 0
        # what we send: the peer's MSS, ours, and what the port can transmit
        tx_mss = self.lib.tas_fp_tx_mtu(self.fp.handle) - 40
        conn.mss = min(peer_mss, self.cfg.tcp.mss, tx_mss) - (12 if conn.ts_ok else 0)
        if opts.wscale is not None:
            conn.snd_wscale = opts.wscale
            conn.rcv_wscale = self.rcv_wscale
        conn.snd_wnd = window  # a SYN's window is never scaled

    def _alloc_buffers(self, app):
        """A flow's RX and TX buffers from the app's segment, charged to its
        uid (one flow, their bytes); None if the uid is over a cap or the
        segment is full."""
        size = self.cfg.buffers.rx_buf + self.cfg.buffers.tx_buf
        if not self.quota.take(app.uid, "flows"):
            self.alloc_refused = "limits.flows_per_uid"
            return None
        if not self.quota.take(app.uid, "buffer_bytes", size):
            self.quota.give(app.uid, "flows")
            self.alloc_refused = "limits.buffer_bytes_per_uid"
            return None
        rx = app.alloc.alloc(self.cfg.buffers.rx_buf)
        tx = app.alloc.alloc(self.cfg.buffers.tx_buf) if rx is not None else None
        if tx is None:
            if rx is not None:
                app.alloc.release(rx)
            self._uncharge(app)
            self.alloc_refused = "buffers.app_segment"
            return None
        return rx, tx

    def _out_of_buffers(self, app, key):
        """Say once per app and cause which key keeps it from more
        connections: its peers only see SYNs go unanswered (connect times
        out), and Linux would have taken them."""
        if key in app.buffer_limits_said:
            return
        app.buffer_limits_said.add(key)
        flows = len(app.conns)
        print(f"tas: app pid {app.pid} (uid {app.uid}) gets no more connections at {flows}: "
              f"{key} is reached (each takes buffers.rx_buf + buffers.tx_buf = "
              f"{self.cfg.buffers.rx_buf + self.cfg.buffers.tx_buf} bytes); new SYNs for it are "
              f"dropped (tcp_no_buffer_drops) until some close", file=sys.stderr, flush=True)

    def _uncharge(self, app):
        self.quota.give(app.uid, "flows")
        self.quota.give(app.uid, "buffer_bytes",
                        self.cfg.buffers.rx_buf + self.cfg.buffers.tx_buf)

    def _passive_open(self, listener, key, eth, ip, tcp):
        if self._backlog_used(listener) >= listener.backlog:
            self.stats.add("tcp_backlog_drops")
            return
        bufs = self._alloc_buffers(listener.app)
        if bufs is None:
            self.stats.add("tcp_no_buffer_drops")
            self._out_of_buffers(listener.app, self.alloc_refused)
            return
        conn = Conn(key, listener.app, listener.ctx, SYN_RCVD, random.getrandbits(32),
                    peer_mac=eth.src, irs=tcp.seq, listener=listener, origin=listener)
        conn.rx_off, conn.tx_off = bufs
        conn.ecn = self.cfg.tcp.ecn and (tcp.flags & (ECE | CWR)) == (ECE | CWR)
        conn.app_knows = listener.handoff
        self._negotiate(conn, tcp.options, tcp.window)
        # Installed now, marked SYN_RCVD: the fast path completes it on the
        # final ACK, so data right behind that ACK is taken in order.
        if self._install(conn) < 0:
            self.stats.add("tcp_flow_table_full")
            self._release_buffers(listener.app, conn.rx_off, conn.tx_off)   # and the charge
            return
        listener.half_open += 1
        listener.app.conns.add(conn)
        self._add_conn(conn)
        self.arp.learn(key[0], eth.src)
        if listener.handoff and listener.fp_slot >= 0:
            self.lib.tas_fp_listener_opened(self.fp.handle, listener.fp_slot)
        if listener.handoff:
            # Before the SYN-ACK: the app has it before the final ACK can
            # come, so the fast path's word that it did is all it waits for
            # (and the flow is quiet: our tick sees it established).
            listener.app.server.send_handoff(listener.app, conn, listener.id)
        self._send_synack(conn, tcp.options)
        conn.next_retry = self.now() + self.handshake_timeout
        self.stats.add("tcp_passive_opens")

    def listen(self, app, ctx, port, backlog, shared=False, handoff=False, reuse=False,
               join_key=0):
        """reuse: SO_REUSEADDR, as Linux: connections still on the port (an
        exited server's, closing) do not refuse it if they came in on a
        listener that had it too; another listener on it does.  shared: join
        the port's listeners (a prefork worker's inherited listener), with
        join_key the key the port's first LISTEN reply gave."""
        if port > 65535:
            return -errno.EINVAL, 0
        if port == 0:
            # bind(port 0) then listen: an ephemeral port, as Linux picks
            # (the reply names it; libtas takes it for getsockname)
            port = self._listen_port()
            if port is None:
                return -errno.EADDRINUSE, 0
        first = self.listeners.get(port)
        # Joining is for the same user (as SO_REUSEPORT is on Linux), or for
        # a process that inherited the listener: only the process that made
        # it and the processes it forked know the port's join key (libtas
        # keeps it in private memory), so like an inherited socket on Linux
        # it works whatever uid the worker has switched to (nginx's workers
        # run as nobody or www-data, and need no right to the low port).
        inherited = (first is not None and shared and join_key != 0
                     and join_key == first.join_key)
        if inherited and first.app.uid != app.uid:
            self.stats.add("tcp_listeners_joined_by_key")
        elif not self.quota.may_listen(app.uid, port):
            self.stats.add("tcp_low_port_refused")
            return -errno.EACCES, 0
        if first is not None and not inherited and (not shared or first.app.uid != app.uid):
            return -errno.EADDRINUSE, 0
        if first is None and any(k[1] == port and not (reuse and c.origin is not None and
                                                       c.origin.reuse)
                                 for k, c in self.conns.items()):
            self.stats.add("tcp_listen_port_busy")
            return -errno.EADDRINUSE, 0
        if not self.quota.take(app.uid, "listeners"):
            return -errno.EMFILE, 0
        lst = Listener(self.next_listener_id, app, ctx, port, max(1, min(backlog, 4096)),
                       accepting=shared, handoff=handoff, reuse=reuse)
        if handoff:
            lst.accept_off = app.alloc.alloc(8)
            if lst.accept_off is None:
                self.quota.give(app.uid, "listeners")
                return -errno.ENOMEM, 0
            self.ffi.memmove(app.segment.ptr(lst.accept_off), bytes(8), 8)
        self.next_listener_id += 1
        if first is None:
            lst.group = [lst]
            lst.join_key = int.from_bytes(os.urandom(8), "little") | 1
            self.listeners[port] = lst
        else:
            lst.group = first.group
            lst.join_key = first.join_key
            lst.group.append(lst)
            self.stats.add("tcp_listeners_joined")
        self.listener_ids[lst.id] = lst
        app.listeners.add(lst)
        self._fp_listen(lst)
        return 0, lst.id

    # ---- SYNs the fast path answers (include/tas/synfast.h) -----------------

    def _fp_listen(self, lst):
        """Register the listener with the fast path (every listener: it
        spreads a port's connections and counts the SYNs it leaves to us)
        and provision a hand-over listener's pool."""
        ctr = (lst.app.segment.ptr(lst.accept_off, "uint64_t *") if lst.handoff
               else self.ffi.NULL)
        lst.fp_slot = self.lib.tas_fp_listener_add(self.fp.handle, lst.id, lst.port, lst.ctx,
                                                   lst.app.id, 1 if lst.handoff else 0,
                                                   lst.backlog, ctr)
        if lst.fp_slot < 0:
            self.syn_stats.add("syn_listener_table_full")   # its SYNs come our way
            return
        if lst.accepting:
            self.lib.tas_fp_listener_accepting(self.fp.handle, lst.fp_slot)
        if self.listeners[lst.port] is lst:
            self.lib.tas_fp_listener_primary(self.fp.handle, lst.fp_slot)
        self._refill(lst)

    def _refill(self, lst):
        """Top the listener's pool up to tcp.syn_pool flows' buffers (a
        connector's: tcp.connect_pool), charged to its app's uid like any
        connection's."""
        if lst.fp_slot < 0 or not lst.handoff or lst.app.alloc is None:
            return
        have = self.lib.tas_fp_listener_pool_count(self.fp.handle, lst.fp_slot)
        b, seg = self._synbuf, lst.app.segment
        want = self._pool_size(lst) - have
        if lst.connector:
            # At most a quarter of the segment it leaves free: the app's
            # accepts and slow connects take from the rest (a small
            # segment was all pool, and a connect found no buffers).
            flow = self.cfg.buffers.rx_buf + self.cfg.buffers.tx_buf
            want = min(want, (lst.app.alloc.free_bytes() + have * flow) // (4 * flow) - have)
        for _ in range(want):
            bufs = self._alloc_buffers(lst.app)
            if bufs is None:
                self.syn_stats.add("syn_pool_refill_failures")
                return
            b.rx_off, b.tx_off = bufs
            b.rx_base, b.tx_base = seg.ptr(bufs[0]), seg.ptr(bufs[1])
            if self.lib.tas_fp_listener_pool_push(self.fp.handle, lst.fp_slot, b) != 0:
                self._release_buffers(lst.app, *bufs)
                return
            self.syn_stats.add("syn_pool_provisioned")

    def _pool_size(self, lst):
        return self.connect_pool if lst.connector else self.syn_pool

    def pool_count(self, lst):
        """Flows' buffers provisioned for the listener, not yet taken."""
        if lst.fp_slot < 0:
            return 0
        return self.lib.tas_fp_listener_pool_count(self.fp.handle, lst.fp_slot)

    def _recycle(self, conn):
        """A closed connection's buffers go straight back to the pool of the
        hand-over listener it came in on (still charged: the pool's now),
        when that has room: no free, allocation or quota round per
        connection.  Closes come in batches on the tick, so the pool may
        hold twice tcp.syn_pool this way (what a busy listener had in use)."""
        lst = conn.origin
        if (lst is None or lst.fp_slot < 0 or not lst.handoff or lst.app is not conn.app or
                self.lib.tas_fp_listener_pool_count(self.fp.handle, lst.fp_slot) >=
                2 * self._pool_size(lst)):
            return False
        b = self._synbuf
        seg = lst.app.segment
        b.rx_off, b.tx_off = conn.rx_off, conn.tx_off
        b.rx_base, b.tx_base = seg.ptr(conn.rx_off), seg.ptr(conn.tx_off)
        if self.lib.tas_fp_listener_pool_push(self.fp.handle, lst.fp_slot, b) != 0:
            return False
        self.syn_stats.add("syn_pool_recycled")
        return True

    def _release_buffers(self, app, rx_off, tx_off):
        if app.alloc is not None:
            app.alloc.release(rx_off)
            app.alloc.release(tx_off)
        self._uncharge(app)

    # for fork_conns.py: a moved flow's old buffers; a handshake the fast
    # path finished without telling us
    release_moved = _release_buffers

    def quietly_established(self, conn):
        return self._quietly_established(conn)

    def establish(self, conn, tcp):
        self._establish(conn, tcp)

    def _fp_unlisten(self, lst):
        """After this no connection opens on lst in the fast path; those it
        opened are ours, and the pool's buffers go back."""
        if lst.fp_slot < 0:
            return
        self.lib.tas_fp_listener_remove(self.fp.handle, lst.fp_slot)
        self.sync_fast()
        b = self._synbuf
        while self.lib.tas_fp_listener_pool_pop(self.fp.handle, lst.fp_slot, b):
            self._release_buffers(lst.app, b.rx_off, b.tx_off)
            self.syn_stats.add("syn_pool_returned")
        lst.fp_slot = -1

    def sync_fast(self, refill=True, in_tick=False, mode=None):
        """Take over the connections the fast path opened
        (include/tas/syn_sweep.h): all of them by default (a request or a
        segment may name one).  The tick sweeps instead (mode
        TAS_SWEEP_TICK), and so do the fast path's kicks (mode 0): the
        connections already over are closed in C, we take only those a
        tick has seen open, and the rest wait in the sweep's list.  Refills
        the pools they came from (unless the caller does).  Returns how many
        connections came from the fast path's ring or to us."""
        lib, s = self.lib, self._sweep
        if not in_tick:
            self._slice_begin()
        s.mode = ((lib.TAS_SWEEP_ALL if mode is None else mode) |
                  (lib.TAS_SWEEP_TIME_WAIT if self.cfg.tcp.time_wait_ms > 0 else 0))
        s.pool_cap, s.conn_pool_cap = 2 * self.syn_pool, 2 * self.connect_pool
        total, touched = 0, set()
        while True:
            lib.tas_fp_syn_sweep(self.fp.handle, s)
            total += s.collected + s.nopen
            if s.collected:
                self.syn_stats.add("syn_synced", s.collected)
            if s.closed:
                self._swept(s)
            for i in range(s.nlst):
                e = s.lst[i]
                lst = self.listener_ids.get(e.listener_id)
                if lst is not None:
                    lst.handed += e.closed    # established, accepted, closed: _establish's count
                    touched.add(lst)
            pending = self._sweep_open
            for i in range(s.nopen):
                lst = self._fast_opened(pending[i].rec, pending[i].collected_at)
                if lst is not None:
                    touched.add(lst)
                self._maybe_yield()
            if not s.more:
                break
        self.fast_pending = s.pending
        if refill:
            for lst in touched:
                self._refill(lst)
        return total

    def _swept(self, s):
        """Note what the sweep closed in C: the counts a connection's open,
        establish and close would have added, its peers for the ARP cache,
        and per connection the TIME_WAIT pair it left (the fast path's table
        has it already), a pair it had reused, buffers the pool had no room
        for."""
        n, lib = s.closed, self.lib
        active = 0                      # connects of ours among them
        for i in range(s.nlst):
            lst = self.listener_ids.get(s.lst[i].listener_id)
            if lst is not None and lst.connector:
                active += s.lst[i].closed
        for name in ("tcp_established", "tcp_closed_by_flag", "tcp_closed_swept"):
            self.stats.add(name, n)
        for name in ("tcp_passive_opens", "tcp_handed_over"):
            self.stats.add(name, n - active)
        if active:
            self.stats.add("tcp_active_opens", active)
            self.stats.add("tcp_syn_sent", active)
        self.stats.add("tcp_closed", n - s.reset)      # (closed both ways)
        if s.reset:                                     # (reset by the peer, _on_reset's count)
            self.stats.add("tcp_rst_received", s.reset)
        if s.recycled:
            self.syn_stats.add("syn_pool_recycled", s.recycled)
        if s.tw_reused:
            self.stats.add("tcp_time_wait_reused", s.tw_reused)
        now = self.now()
        for i in range(s.npeers):
            self.arp.learn(s.peers[i].ip.to_bytes(4, "big"), bytes(s.peers[i].mac), now)
        expiry = now + self.cfg.tcp.time_wait_ms / 1000
        done = self._sweep_done
        for i in range(s.ndone):
            d = done[i]
            key = (d.peer_ip.to_bytes(4, "big"), d.local_port, d.peer_port)
            flags = d.flags
            if flags & lib.TAS_SWEPT_TW_REUSED:
                self._tw_forget(key)      # (the SYN took it out of the fast path's table)
            if flags & lib.TAS_SWEPT_TW:
                self._tw_forget(key)
                self.time_wait[key] = (expiry, d.snd_nxt, d.rcv_nxt, bytes(d.peer_mac))
                self.tw_expiry.append((expiry, key))
                if flags & lib.TAS_SWEPT_TW_HELD:
                    self.tw_held.add(key)     # (the sweep holds it in the fast path)
            if flags & lib.TAS_SWEPT_RELEASE:
                self._release_buffers(self.listener_ids[d.listener_id].app, d.rx_off, d.tx_off)

    def _fast_opened(self, rec, collected_at):
        """collected_at: when the sweep took the record (CLOCK_MONOTONIC):
        the handshake timer runs from then, not from now."""
        lst = self.listener_ids.get(rec.listener_id)
        if lst is None:
            # cannot be: listen_close takes the fast path's listener away
            # and collects its records before forgetting it
            self.lib.tas_fp_flow_remove(self.fp.handle, rec.flow_id)
            self.syn_stats.add("syn_orphan_records")
            return None
        key = (rec.peer_ip.to_bytes(4, "big"), rec.local_port, rec.peer_port)
        if key in self.conns:
            self.syn_stats.add("syn_key_conflicts")   # a 4-tuple not held: a bug
        lib = self.lib
        if rec.flags & lib.TAS_SYN_OPENED_ACTIVE:
            return self._fast_connected(lst, key, rec, collected_at)
        f = lib.tas_fp_flow(self.fp.handle, rec.flow_id)
        conn = Conn(key, lst.app, lst.ctx, SYN_RCVD, rec.iss, peer_mac=bytes(rec.peer_mac),
                    irs=rec.irs, listener=lst, origin=lst, app_knows=True, flow_id=rec.flow_id,
                    rx_off=rec.rx_off, tx_off=rec.tx_off, mss=f.mss,
                    snd_wscale=f.snd_wscale, rcv_wscale=f.rcv_wscale,
                    ts_ok=bool(f.flags & lib.TAS_FLF_TS), sack_ok=bool(f.flags & lib.TAS_FLF_SACK),
                    ecn=bool(f.flags & lib.TAS_FLF_ECN), ts_recent=f.ts_recent,
                    snd_wnd=f.snd_wnd)
        age = max(0.0, time.monotonic() - collected_at)
        conn.next_retry = self.now() - age + self.handshake_timeout
        if rec.flags & lib.TAS_SYN_OPENED_TW_REUSED:
            self._tw_del(key)     # (the fast path's table has dropped it already)
            self.stats.add("tcp_time_wait_reused")
        lst.half_open += 1
        lst.app.conns.add(conn)
        self._add_conn(conn)
        self.arp.learn(key[0], conn.peer_mac)
        self.stats.add("tcp_passive_opens")
        return lst

    def _fast_connected(self, lst, key, rec, collected_at):
        """A connect the fast path opened (lst: the app's connector): ours
        in SYN_SENT (our timers resend the SYN) or established already."""
        conn = Conn(key, lst.app, self.lib.tas_fp_flow(self.fp.handle, rec.flow_id).ctx,
                    SYN_SENT, rec.iss, peer_mac=bytes(rec.peer_mac), origin=lst,
                    app_knows=True, flow_id=rec.flow_id, req_id=rec.req_id,
                    rx_off=rec.rx_off, tx_off=rec.tx_off)
        age = max(0.0, time.monotonic() - collected_at)
        conn.next_retry = self.now() - age + self.handshake_timeout
        if rec.flags & self.lib.TAS_SYN_OPENED_TW_REUSED:
            self._tw_del(key)     # (the fast path's table has dropped it already)
            self.stats.add("tcp_time_wait_reused")
        lst.app.conns.add(conn)
        self._add_conn(conn)
        self.stats.add("tcp_active_opens")
        self.stats.add("tcp_syn_sent")
        if self._quietly_established(conn):
            self._establish(conn, None)
        return lst

    def _from_flow(self, conn, f):
        """What the fast path negotiated on a connect it completed (the
        peer's ISN is the fast path's alone: nothing here needs it once
        the flow is installed)."""
        lib = self.lib
        conn.mss, conn.snd_wscale, conn.rcv_wscale = f.mss, f.snd_wscale, f.rcv_wscale
        conn.ts_ok, conn.sack_ok = bool(f.flags & lib.TAS_FLF_TS), bool(f.flags & lib.TAS_FLF_SACK)
        conn.ecn, conn.ts_recent, conn.snd_wnd = (bool(f.flags & lib.TAS_FLF_ECN), f.ts_recent,
                                                   f.snd_wnd)

    def _add_conn(self, conn):
        self.conns[conn.key] = conn
        self.awake[conn] = None

    def _hold(self, key, delta):
        self.lib.tas_fp_syn_hold(self.fp.handle, int.from_bytes(key[0], "big"), key[1], key[2],
                                 delta)

    def _tw_add(self, key, entry):
        """entry: (expiry, snd_nxt, rcv_nxt, peer_mac).  The fast path gets
        the pair too: a SYN above rcv_nxt reuses it there (the others come
        our way); a full table holds the pair for us instead."""
        if key in self.time_wait:
            self._tw_del(key)
        self.time_wait[key] = entry
        if self.lib.tas_fp_tw_add(self.fp.handle, int.from_bytes(key[0], "big"), key[1],
                                  key[2], entry[2] & 0xFFFFFFFF) != 0:
            self.tw_held.add(key)
            self._hold(key, 1)

    def _tw_del(self, key):
        if self.time_wait.get(key) is None:
            return
        if key not in self.tw_held:
            self.lib.tas_fp_tw_del(self.fp.handle, int.from_bytes(key[0], "big"), key[1],
                                   key[2])
        self._tw_forget(key)

    def _tw_forget(self, key):
        """Drop our record of a TIME_WAIT pair (and its hold), not the
        fast path's table entry."""
        if self.time_wait.pop(key, None) is not None and key in self.tw_held:
            self.tw_held.discard(key)
            self._hold(key, -1)

    def _pick_listener(self, port):
        """The listener of the port that takes the next connection: round
        robin over those taking connections (the first one if none does)."""
        first = self.listeners[port]
        takers = [lst for lst in first.group if lst.accepting]
        if not takers:
            return first
        first.rr += 1
        return takers[first.rr % len(takers)]

    # ---- prefork: connections on a listener whose process never accepts ----

    def _move_stranded(self):
        """A port's first listener takes connections until a listener of
        the port accepts (a single process may listen, connect to itself,
        then accept).  In a prefork server that first one is the master's,
        which never accepts: what it got before the workers joined would
        wait there forever.  Once one of the port's listeners accepts, the
        established connections of a listener that has not asked to accept
        move to one that has (include/tas/flow.h tas_fp_flow_move)."""
        moved = []
        for lst in self.listener_ids.values():
            if lst.accepting or not lst.handoff or len(lst.group) < 2:
                continue
            takers = [t for t in lst.group if t.accepting and t.handoff and t.fp_slot >= 0]
            if not takers:
                continue
            for conn in [c for c in lst.app.conns if c.origin is lst]:
                if conn.state == ESTABLISHED and conn.listener is None:
                    lst.rr += 1
                    old = self._move(conn, lst, takers[lst.rr % len(takers)])
                    if old is not None:
                        moved.append(old)
        if moved:
            # no core looks at the old buffers after this
            self.lib.tas_fp_quiesce(self.fp.handle)
            for app, rx_off, tx_off in moved:
                self._release_buffers(app, rx_off, tx_off)

    def _move(self, conn, lst, to):
        """Move conn from lst to listener `to`: the old app's buffers
        (app, rx_off, tx_off) to free after quiescence, or None if it
        cannot move now (retried on the next tick)."""
        old = self.move_flow(conn, to.app, to.ctx, to.id)
        if not isinstance(old, tuple):
            return None
        conn.origin = to
        # The backlogs: gone from lst unaccepted, waiting on `to` now.
        lst.handed = max(0, lst.handed - 1)
        to.handed += 1
        if lst.fp_slot >= 0:
            self.lib.tas_fp_listener_gone(self.fp.handle, lst.fp_slot)
        self.lib.tas_fp_listener_opened(self.fp.handle, to.fp_slot)
        self.stats.add("tcp_conns_moved")
        return old

    def move_flow(self, conn, app, ctx, listener_id, accepted=False, tell_old=True):
        """The flow of conn, with the bytes its app has not read, to app's
        context ctx (tas_fp_flow_move).  Returns the old app's buffers
        (app, rx_off, tx_off), to free after tas_fp_quiesce, or -errno:
        -ENOBUFS (no buffers in app's segment), -EBUSY (not quiet now)."""
        bufs = self._alloc_buffers(app)
        if bufs is None:
            self.stats.add("tcp_move_no_buffer")
            return -errno.ENOBUFS
        m = self.ffi.new("struct tas_flow_move *")
        seg = app.segment
        m.rx_base, m.tx_base = seg.ptr(bufs[0]), seg.ptr(bufs[1])
        m.rx_off, m.tx_off = bufs
        m.ctx, m.app_id, m.listener_id, m.accepted = ctx, app.id, listener_id, int(accepted)
        self._wake(conn)              # its flow id changes
        new_id = self.lib.tas_fp_flow_move(self.fp.handle, conn.flow_id, m)
        if new_id < 0:
            self._release_buffers(app, *bufs)
            self.stats.add("tcp_move_busy" if new_id == -errno.EBUSY else "tcp_move_deferred")
            return -errno.EBUSY
        old = (conn.app, conn.rx_off, conn.tx_off)
        old_id = conn.flow_id
        conn.app.conns.discard(conn)
        if tell_old:
            conn.app.server.send_event(conn.app, "CONN_CLOSED", flow_id=old_id,
                                       flags=self.lib.TAS_CTL_FL_MOVED)
        conn.app, conn.ctx, conn.flow_id = app, ctx, new_id
        conn.rx_off, conn.tx_off = bufs
        app.conns.add(conn)
        return old

    def listen_close(self, app, listener_id):
        lst = self.listener_ids.get(listener_id)
        if lst is None or lst.app is not app or lst.connector:
            return -errno.EBADF
        self._fp_unlisten(lst)
        del self.listener_ids[listener_id]
        lst.group.remove(lst)
        if self.listeners[lst.port] is lst:
            if lst.group:
                self.listeners[lst.port] = lst.group[0]
                if lst.group[0].fp_slot >= 0:
                    self.lib.tas_fp_listener_primary(self.fp.handle, lst.group[0].fp_slot)
            else:
                del self.listeners[lst.port]
        app.listeners.discard(lst)
        self.quota.give(app.uid, "listeners")
        if lst.accept_off >= 0 and app.alloc is not None:
            app.alloc.release(lst.accept_off)
        for conn in [c for c in self.conns.values() if c.listener is lst]:
            if self._quietly_established(conn):
                self._establish(conn, None)   # the app's already (it may have accepted it)
            else:
                self._abort(conn)   # never accepted: reset
        return 0

    def accept(self, app, listener_id):
        lst = self.listener_ids.get(listener_id)
        if lst is None or lst.app is not app or lst.connector:
            return -errno.EBADF, None
        if not lst.accepting and lst.fp_slot >= 0:
            self.lib.tas_fp_listener_accepting(self.fp.handle, lst.fp_slot)
        lst.accepting = True
        if not lst.ready:
            return -errno.EAGAIN, None
        conn = lst.ready.pop(0)
        conn.listener = None
        return 0, conn

    def accepted_count(self, lst):
        """How many connections a hand-over listener's app has accepted (its
        counter; the app's to write, so only its own backlog can suffer)."""
        seg = lst.app.segment
        return seg.ptr(lst.accept_off, "uint64_t *")[0] if seg is not None else 0

    def _backlog_used(self, lst):
        """Connections counted against the backlog.  A hand-over listener's:
        opened, not gone before they were established, not accepted by the
        app (as the fast path counts them).  half_open + handed is that sum
        whether or not a tick has seen the quiet ones established yet (the
        app may have accepted those already)."""
        if lst.handoff:
            return max(0, lst.half_open + lst.handed - self.accepted_count(lst))
        return lst.half_open + len(lst.ready)

    def _neighbour(self, ip, mac):
        ip = int.from_bytes(ip, "big")
        if mac is None:
            self.lib.tas_fp_neigh_del(self.fp.handle, ip)
        else:
            self.lib.tas_fp_neigh_set(self.fp.handle, ip, mac)

    def connect(self, app, ctx, peer_ip, peer_port, req_id):
        """A connect the fast path did not open (TAS_CTL_CONNECT, or its
        ring of those it left to us: connector.py)."""
        local_port = self._ephemeral_port(peer_ip, peer_port)
        if local_port is None:
            return -errno.EADDRNOTAVAIL
        key = (peer_ip, local_port, peer_port)
        bufs = self._alloc_buffers(app)
        if bufs is None:
            self._hold(key, -1)
            return -errno.ENOMEM
        conn = Conn(key, app, ctx, SYN_SENT, random.getrandbits(32), req_id=req_id, held=True)
        conn.rx_off, conn.tx_off = bufs
        self._add_conn(conn)
        app.conns.add(conn)
        now = self.now()
        conn.next_retry = now
        # The SYN goes now if the peer's MAC is known, else when ARP
        # resolves it (arp_resolved; the tick retries and times out).  Left
        # to the tick, every connect() waited up to its 10 ms.
        mac = self.arp.lookup(peer_ip, now)
        if mac is not None:
            self._first_syn(conn, mac, now)
        self.stats.add("tcp_active_opens")
        return 0

    def _first_syn(self, conn, mac, now):
        conn.peer_mac = mac
        conn.next_retry = now + self.handshake_timeout
        self._send_syn(conn)

    def arp_resolved(self, ip, mac):
        """ARP found ip: connections waiting to send their SYN to it send it."""
        now = self.now()
        for conn in [c for c in self.awake if c.state == SYN_SENT and not c.peer_mac
                     and c.key[0] == ip]:
            self._first_syn(conn, mac, now)

    def _listen_port(self):
        """A free port of tcp.ephemeral_ports for a listener bound to port
        0: no listener and no connection on it."""
        used = {k[1] for k in self.conns} | set(self.listeners)
        eph = self.ephemeral
        tries = itertools.chain((random.choice(eph) for _ in range(64)), eph)
        return next((p for p in tries if p not in used), None)

    def _ephemeral_port(self, peer_ip, peer_port):
        """A local port for a connect to (peer_ip, peer_port), its 4-tuple
        held (tas_fp_syn_hold) so the fast path's connects keep off it."""
        used = {k[1] for k in self.conns} | set(self.listeners)
        eph = self.ephemeral
        tries = itertools.chain((random.choice(eph) for _ in range(64)), eph)
        for p in tries:
            key = (peer_ip, p, peer_port)
            if p in used or (key in self.time_wait and not self._tw_reusable(key)):
                continue
            if key in self.time_wait:
                self._tw_del(key)
                self.stats.add("tcp_time_wait_reused")
            # Held first, then looked for: a fast-path connect installs
            # first, then looks for a hold (fp_tcp_connect.c).
            self._hold(key, 1)
            if self.lib.tas_fp_flow_lookup(self.fp.handle, int.from_bytes(peer_ip, "big"),
                                           p, peer_port) < 0:
                return p
            self._hold(key, -1)
        return None

    def _tw_reusable(self, key):
        """tcp.time_wait_reuse: a connect may take a pair in TIME_WAIT for
        over a second (Linux's tcp_tw_reuse), as the fast path's do."""
        if not self.cfg.tcp.time_wait_reuse:
            return False
        since = self.time_wait[key][0] - self.cfg.tcp.time_wait_ms / 1000
        return self.now() - since > 1.0

    def _on_synack(self, conn, eth, tcp):
        if not (tcp.flags & SYN and tcp.flags & ACK) or tcp.ack != (conn.iss + 1) & 0xFFFFFFFF:
            if tcp.flags & ACK:
                self.send_tcp(conn, eth.src, Tcp(conn.key[1], conn.key[2], tcp.ack, 0, RST, 0))
            return
        conn.irs = tcp.seq
        conn.ecn = self.cfg.tcp.ecn and bool(tcp.flags & ECE)
        self._negotiate(conn, tcp.options, tcp.window)
        if tcp.options.wscale is not None:
            conn.snd_wnd = tcp.window  # still unscaled in a SYN-ACK
        self._establish(conn, tcp, send_ack=True)

    def _establish(self, conn, tcp, send_ack=False):
        """tcp: the segment that completed it (None: the fast path did, on a
        quiet flow, and has its window and timestamp)."""
        if tcp is not None and not (tcp.flags & SYN):
            conn.snd_wnd = tcp.window << conn.snd_wscale
            if tcp.options.ts:
                conn.ts_recent = tcp.options.ts[0]
        flow_id = conn.flow_id if conn.flow_id >= 0 else self._install(conn)
        if flow_id < 0:
            self._abort(conn)
            return
        f = self.lib.tas_fp_flow(self.fp.handle, flow_id)
        if conn.state == SYN_SENT and tcp is None:
            self._from_flow(conn, f)      # a connect the fast path completed
        fp_completed = not f.flags & self.lib.TAS_FLF_SYNRCVD
        if not fp_completed:
            self.lib.tas_fp_flow_lock(f)
            f.flags &= ~self.lib.TAS_FLF_SYNRCVD
            self.lib.tas_fp_flow_unlock(f)
        conn.state = ESTABLISHED
        conn.una_since = self.now()
        if self.cc_factory is not None:
            conn.cc = self.cc_factory(conn, conn.una_since)
        if send_ack:
            f = self.lib.tas_fp_flow(self.fp.handle, flow_id)
            opts = TcpOptions(ts=(self._ts(), conn.ts_recent)) if conn.ts_ok else TcpOptions()
            self.send_tcp(conn, conn.peer_mac, Tcp(conn.key[1], conn.key[2], f.tx_una,
                                                   f.rx_next_seq, ACK,
                                                   min(f.rx_avail >> conn.rcv_wscale, 65535),
                                                   opts))
        self.stats.add("tcp_established")
        if conn.listener is not None and conn.app_knows:
            # The app's from now on, like an accepted one (a reset is
            # reported to it, it closes it).  It may have accepted it
            # already: the fast path told it first.
            lst, conn.listener = conn.listener, None
            lst.half_open -= 1
            lst.handed += 1
            self.stats.add("tcp_handed_over")
            if not fp_completed:
                conn.app.server.send_event(conn.app, "NEWCONN", listener_id=lst.id,
                                           flow_id=conn.flow_id,
                                           flags=self.lib.TAS_CTL_FL_HANDOFF |
                                           self.lib.TAS_CTL_FL_ESTAB)
        elif conn.listener is not None:
            conn.listener.half_open -= 1
            conn.listener.ready.append(conn)
            conn.app.server.send_event(conn.app, "NEWCONN", listener_id=conn.listener.id,
                                       local_port=conn.key[1])
        elif conn.app_knows and f.flags & self.lib.TAS_FLF_UNTOLD:
            # The fast path completed the connect, its app's queue full:
            # the app hears of it from us.
            self.lib.tas_fp_flow_lock(f)
            f.flags &= ~self.lib.TAS_FLF_UNTOLD
            self.lib.tas_fp_flow_unlock(f)
            conn.app.server.send_opened(conn.app, conn, conn.req_id)
        elif not conn.app_knows:
            conn.app.server.send_opened(conn.app, conn, conn.req_id)

    def _app_closed_quietly(self, conn, f):
        """libtas closes with a flag on the flow (TAS_ATX_FL_CLOSED), not a
        message: take it as its close request."""
        if not conn.app_closed and f.flags & self.lib.TAS_FLF_APP_CLOSED:
            conn.app_closed = True
            conn.peer_closed_first = bool(f.flags & self.lib.TAS_FLF_PEER_FIN_FIRST)
            self.stats.add("tcp_closed_by_flag")

    def _quietly_established(self, conn):
        """A quiet flow (handed over at its SYN) the fast path completed:
        it does not tell us, the tick and the next segment look."""
        if not conn.app_knows or conn.state not in (SYN_RCVD, SYN_SENT) or conn.flow_id < 0:
            return False
        lib = self.lib
        fl = lib.tas_fp_flow(self.fp.handle, conn.flow_id).flags
        pending = lib.TAS_FLF_SYNRCVD if conn.state == SYN_RCVD else lib.TAS_FLF_SYNSENT
        return bool(fl & lib.TAS_FLF_ACTIVE) and not fl & pending

    def _install(self, conn):
        init = self.ffi.new("struct tas_flow_init *")
        seg = conn.app.segment
        init.rx_base = seg.ptr(conn.rx_off)
        init.tx_base = seg.ptr(conn.tx_off)
        init.rx_size = self.cfg.buffers.rx_buf
        init.tx_size = self.cfg.buffers.tx_buf
        init.peer_ip = int.from_bytes(conn.key[0], "big")
        init.local_port, init.peer_port = conn.key[1], conn.key[2]
        init.peer_mac = conn.peer_mac
        init.ctx = conn.ctx
        init.app_id = conn.app.id
        init.mss = conn.mss
        init.snd_wscale, init.rcv_wscale = conn.snd_wscale, conn.rcv_wscale
        init.flags = ((self.lib.TAS_FLF_TS if conn.ts_ok else 0) |
                      (self.lib.TAS_FLF_ECN if conn.ecn else 0) |
                      (self.lib.TAS_FLF_SACK if conn.sack_ok else 0) |
                      (self.lib.TAS_FLF_SYNRCVD if conn.state == SYN_RCVD else 0) |
                      (self.lib.TAS_FLF_QUIET if conn.app_knows else 0))
        init.rx_next_seq = (conn.irs + 1) & 0xFFFFFFFF
        init.tx_next_seq = (conn.iss + 1) & 0xFFFFFFFF
        init.snd_wnd = conn.snd_wnd
        init.ts_recent = conn.ts_recent
        init.tx_rate_kbps = 0
        conn.flow_id = self.lib.tas_fp_flow_add(self.fp.handle, init)
        return conn.flow_id

    # ---- closing -----------------------------------------------------------

    def close(self, app, flow_id, reset):
        conn = next((c for c in app.conns if c.flow_id == flow_id), None)
        if conn is None and self.sync_fast():
            conn = next((c for c in app.conns if c.flow_id == flow_id), None)
        if conn is None:
            return -errno.EBADF
        self._wake(conn)
        conn.app_closed = True
        if conn.state in (ESTABLISHED, SYN_RCVD):   # (accepted before we saw the ACK)
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
            conn.peer_closed_first = bool(f.flags & self.lib.TAS_FLF_RXFIN)
        if reset:
            self._abort(conn)
        elif conn.state == CLOSED:
            self._forget(conn)
        return 0

    def _send_rst(self, conn):
        if conn.state in (ESTABLISHED, SYN_RCVD):
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id) if conn.flow_id >= 0 else None
            seq = f.tx_una + f.tx_sent if f is not None else conn.iss + 1
            ack = f.rx_next_seq if f is not None else conn.irs + 1
            # Linux's active reset: RST|ACK at snd_nxt, acknowledging rcv_nxt.
            self.send_tcp(conn, conn.peer_mac, Tcp(conn.key[1], conn.key[2], seq, ack,
                                                   RST | ACK, 0))
            self.stats.add("tcp_rst_sent")

    def kill(self, conn):
        """An operator's `tasctl flow kill`: RST to the peer, and the app
        sees the connection reset (as if the peer had reset it)."""
        if conn.state == CLOSED:
            return              # reset already; the app has yet to close it
        self._wake(conn)
        self.stats.add("tcp_killed")
        if conn.state == SYN_SENT:
            conn.app.server.send_opened(conn.app, conn, conn.req_id, -errno.ECONNABORTED)
            self._remove_flow(conn)
            self._forget(conn)
        elif conn.app_closed or conn.listener is not None or conn.state != ESTABLISHED:
            self._abort(conn)
        else:
            self._send_rst(conn)
            self._remove_flow(conn)
            conn.app.server.send_event(conn.app, "CONN_CLOSED", flow_id=conn.flow_id,
                                       status=-errno.ECONNRESET)

    def _abort(self, conn):
        """Reset the connection and free everything."""
        self._send_rst(conn)
        if conn.listener is not None and conn.state == SYN_RCVD:
            conn.listener.half_open -= 1
        if conn.listener is not None and conn in conn.listener.ready:
            conn.listener.ready.remove(conn)
        self._remove_flow(conn)
        self._forget(conn)

    def _on_reset(self, conn):
        self.stats.add("tcp_rst_received")
        if conn.state == SYN_SENT:
            conn.app.server.send_opened(conn.app, conn, conn.req_id, -errno.ECONNREFUSED)
            self._remove_flow(conn)
            self._forget(conn)
            return
        state = conn.state        # _remove_flow marks it CLOSED
        self._remove_flow(conn)
        if conn.app_closed or conn.listener is not None:
            if conn.listener is not None:
                if state == SYN_RCVD:
                    conn.listener.half_open -= 1
                elif conn in conn.listener.ready:
                    conn.listener.ready.remove(conn)
            self._forget(conn)
        else:
            conn.app.server.send_event(conn.app, "CONN_CLOSED", flow_id=conn.flow_id,
                                       status=-errno.ECONNRESET)

    def _remove_flow(self, conn):
        if conn.parked:
            self._unpark(conn)        # (CLOSED from here: nothing for the tick)
        if conn.flow_id >= 0 and conn.state in (ESTABLISHED, SYN_RCVD, SYN_SENT):
            if not conn.held and self.conns.get(conn.key) is conn:
                # Until we forget it, a SYN of its 4-tuple is ours (the
                # fast path would open a second connection on it).
                conn.held = True
                self._hold(conn.key, 1)
            self.lib.tas_fp_flow_remove(self.fp.handle, conn.flow_id)
        conn.state = CLOSED

    def _forget(self, conn):
        """Drop all state once neither the fast path nor the app uses it."""
        if conn.parked:
            self._unpark(conn)
        self.awake.pop(conn, None)
        if conn.app_knows and conn.listener is not None:
            if conn.listener.fp_slot >= 0:     # no longer in its backlog
                self.lib.tas_fp_listener_gone(self.fp.handle, conn.listener.fp_slot)
            if not conn.app_closed:
                # Handed over at the SYN, gone before we saw it established:
                # the app drops it (or, accepted already, sees it reset).
                conn.app.server.send_event(conn.app, "CONN_CLOSED", flow_id=conn.flow_id,
                                           status=-errno.ECONNRESET)
        if conn.held:
            conn.held = False
            self._hold(conn.key, -1)
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        conn.app.conns.discard(conn)
        if not self._recycle(conn):
            self._release_buffers(conn.app, conn.rx_off, conn.tx_off)
        if conn.orphan and not conn.app.conns:
            conn.app.server.release(conn.app)   # its last lingering connection

    def app_gone(self, app):
        """The app's registration socket closed: its process exited (or was
        killed), and Linux would close every socket it had.  Its listeners
        go.  Its connections finish like the kernel's would after close():
        their data and FIN are still in its segment, which the daemon keeps
        until the last of them is gone (then _forget calls
        app.server.release); one still open gets its FIN now, after the data
        the app had queued.  One with received data the app never read is
        reset instead, as Linux does, and so is one handed over that the app
        never accepted (Linux resets its accept queue).  Returns how many
        connections linger."""
        for lst in list(app.listeners):
            self.listen_close(app, lst.id)
        self.connectors.remove(app)      # (its records collected: sync_fast)
        self.sync_fast()
        for conn in list(app.conns):
            self._wake(conn)
            if self._quietly_established(conn):
                self._establish(conn, None)
            if conn.state != ESTABLISHED:
                self._abort(conn)       # not yet (or no longer) a connection
                continue
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
            if self._never_accepted(conn, f):
                self.stats.add("tcp_rst_unaccepted")
                self._abort(conn)
                continue
            if conn.fork_holds:
                conn.orphan = True      # its children may still take it (fork_conns.py)
                continue
            if self.close_for_app(conn, f, "tcp_closed_at_exit"):
                conn.orphan = True
                self.stats.add("tcp_orphaned")
        return len(app.conns)

    def close_for_app(self, conn, f, counter):
        """Close an established conn as the last close of its socket would:
        FIN after the data queued, or a RST if received data was never read.
        False if it was reset (and forgotten)."""
        self._app_closed_quietly(conn, f)
        if self._reset_quietly(f):
            conn.app_closed = True          # reset by the peer already: no FIN, no RST
            self._on_reset(conn)
            return False
        if not conn.app_closed:
            conn.app_closed = True
            conn.peer_closed_first = bool(f.flags & self.lib.TAS_FLF_RXFIN)
            if f.rx_avail < f.rx_size:     # received, never read
                self._discard(conn)
                return False
            self.lib.tas_fp_flow_close(self.fp.handle, conn.flow_id)
            self.stats.add(counter)
        return not self._close_discards(conn, f)

    def _never_accepted(self, conn, f):
        """Handed over at its SYN (libtas accepts it from a queue of its
        own), and accept never marked it (TAS_ATX_FL_ACCEPTED)."""
        return (conn.app_knows and conn.origin is not None and conn.origin.handoff and
                not conn.origin.connector and not conn.app_closed and not f.flags & self.lib.TAS_FLF_APP_ACCEPTED)

    def _close_discards(self, conn, f):
        """A closed connection's received data that nobody will read --
        there at the close, or arriving since (TAS_FLF_RX_DISCARD) -- resets
        it: Linux's close() sends a RST when it discards unread data, and
        its closed socket answers new data with one.  True if reset."""
        if not conn.app_closed or not f.flags & self.lib.TAS_FLF_RX_DISCARD:
            return False
        self._discard(conn)
        return True

    def _discard(self, conn):
        self.stats.add("tcp_rst_unread")
        self._abort(conn)

    def state_of(self, conn):
        """The connection's state as Linux names it (ss, /proc/net/tcp): the
        close handshake runs in the fast path's flags, under ESTABLISHED
        here."""
        if conn.state != ESTABLISHED:
            return conn.state
        lib = self.lib
        flags = lib.tas_fp_flow(self.fp.handle, conn.flow_id).flags
        rxfin = bool(flags & lib.TAS_FLF_RXFIN)
        # (libtas's close flag may not have been taken by a tick yet)
        if not (conn.app_closed or flags & lib.TAS_FLF_APP_CLOSED):
            return "CLOSE_WAIT" if rxfin else ESTABLISHED
        peer_first = (conn.peer_closed_first if conn.app_closed
                      else flags & lib.TAS_FLF_PEER_FIN_FIRST)
        if flags & lib.TAS_FLF_TXFIN_ACKED:
            if not rxfin:
                return "FIN_WAIT2"
            # both ways closed: the next tick moves it on (to the TIME_WAIT
            # pairs, or gone if the peer closed first)
            return "CLOSED" if peer_first else "TIME_WAIT"
        if peer_first:
            return "LAST_ACK"
        return "CLOSING" if rxfin else "FIN_WAIT1"

    def time_wait_rows(self):
        """TIME_WAIT pairs (no connection, no app any more), with the
        milliseconds they have left."""
        now = self.now()
        return [{"peer": ".".join(map(str, key[0])), "local_port": key[1], "peer_port": key[2],
                 "state": "TIME_WAIT", "app": None, "uid": None, "pid": None, "flow_id": None,
                 "expires_ms": max(0, round((tw[0] - now) * 1000))}
                for key, tw in self.time_wait.items()]

    def reset_all(self, app):
        self.sync_fast()
        for conn in list(app.conns):
            self._abort(conn)

    # ---- timers ------------------------------------------------------------

    def _slice_begin(self):
        self._slice_n, self._yields_left = 0, YIELD_MAX

    def _maybe_yield(self):
        self._slice_n += 1
        if self._slice_n >= YIELD_EVERY and self._yields_left > 0:
            self._slice_n = 0
            self._yields_left -= 1
            os.sched_yield()
            self.stats.add("sp_tick_yields")

    def tick(self):
        self._slice_begin()
        # (closes below recycle buffers first: the refill is after them)
        self.sync_fast(refill=False, in_tick=True, mode=self.lib.TAS_SWEEP_TICK)
        now = self.now()
        self._wake_changed(now)
        self.tick_no, self.tick_at = self.tick_no + 1, now
        visit = list(self.awake)
        for conn in visit:
            self._maybe_yield()
            if self._quietly_established(conn):
                self._establish(conn, None)
                if conn.state == ESTABLISHED:    # a short one may be over already
                    self._tick_established(conn, now)
            elif conn.state == SYN_SENT:
                self._tick_syn_sent(conn, now)
            elif conn.state == SYN_RCVD and now >= conn.next_retry:
                self._retry_handshake(conn, now, lambda c: self._send_synack(c, TcpOptions(
                    wscale=c.snd_wscale if c.rcv_wscale else None,
                    ts=(c.ts_recent, 0) if c.ts_ok else None, sack_ok=c.sack_ok)))
            elif conn.state == ESTABLISHED:
                self._tick_established(conn, now)
            elif conn.state == CLOSED:
                self.awake.pop(conn, None)   # reset, waiting for its app: nothing to time
        for lst in self.listener_ids.values():
            self._refill(lst)
        self._move_stranded()
        while self.tw_expiry and self.tw_expiry[0][0] <= now:
            expiry, key = self.tw_expiry.popleft()
            tw = self.time_wait.get(key)
            if tw is not None and tw[0] == expiry:    # not reused and closed again
                self._tw_del(key)
        self.stats.add("tcp_ticks")
        self.stats.add("tcp_tick_visits", len(visit))
        self.stats.set("tcp_tick_visited_last", len(visit))
        self.stats.set("tcp_conns_parked", len(self.parked))
        self.stats.set("tcp_flows_active", self.lib.tas_fp_flow_count(self.fp.handle))
        self.stats.set("tcp_conns", len(self.conns) + self.fast_pending)
        self.stats.set("tcp_time_wait", len(self.time_wait))

    def _retry_handshake(self, conn, now, send):
        if conn.retries >= self.cfg.tcp.handshake_retries and not self._stop_connect(conn):
            self._establish(conn, None)   # the SYN-ACK came this very moment
            return
        if conn.retries >= self.cfg.tcp.handshake_retries:
            self.stats.add("tcp_handshake_timeouts")
            if conn.state == SYN_SENT:
                conn.app.server.send_opened(conn.app, conn, conn.req_id, -errno.ETIMEDOUT)
            self._abort(conn)
            return
        conn.retries += 1
        conn.next_retry = now + self.handshake_timeout * (2 ** conn.retries)
        send(conn)

    def _stop_connect(self, conn):
        """Before giving up on a connect the fast path opened: its SYN-ACK
        must not complete it any more (its app would hear both).  False
        if it has completed it already."""
        if conn.flow_id < 0 or conn.state != SYN_SENT:
            return True
        lib = self.lib
        f = lib.tas_fp_flow(self.fp.handle, conn.flow_id)
        lib.tas_fp_flow_lock(f)
        pending = bool(f.flags & lib.TAS_FLF_SYNSENT)
        if pending:           # what follows goes to us, as for a reset flow
            f.flags |= lib.TAS_FLF_RESET
        lib.tas_fp_flow_unlock(f)
        return pending

    def _tick_syn_sent(self, conn, now):
        if not conn.peer_mac:
            mac = self.arp.lookup(conn.key[0], now)
            if mac is None:
                if now - conn.next_retry > self.handshake_timeout * 2 ** self.cfg.tcp.handshake_retries:
                    conn.app.server.send_opened(conn.app, conn, conn.req_id, -errno.EHOSTUNREACH)
                    self._forget(conn)
                return
            self._first_syn(conn, mac, now)
        elif now >= conn.next_retry:
            self._retry_handshake(conn, now, self._send_syn)

    def _tick_established(self, conn, now):
        f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
        if self._reset_quietly(f):
            self._tick_reset(conn, f, now)
            return
        # A flow closing (or otherwise busy) now is not parked after this
        # visit: no snapshot for it (most visits under connection churn).
        may_park = self._may_park(conn, f.flags)
        if may_park:
            # Before the visit reads the flow: whatever changes after this
            # wakes the flow if it is parked.
            self.lib.tas_fp_flow_snap(self.fp.handle, conn.flow_id)
        if conn.cc is not None:
            conn.cc.update(f, now)
        self._check_timeout(conn, f, now)
        self._refresh_timestamps(conn, f, now)
        self._check_close(conn, f, now)
        if may_park and conn.state == ESTABLISHED and self._idle(conn, f):
            self._park(conn)

    def _reset_quietly(self, f):
        """The peer's exact RST on a quiet flow, taken by the fast path, which
        told the app (a quiet flow's RST does not come our way).  libtas
        closes such a connection quietly, with a flag on the flow: the flow
        stays installed until that flag comes, then goes (_check_close),
        without a message either way."""
        return f.flags & self._quiet_reset == self._quiet_reset

    def _tick_reset(self, conn, f, now):
        """Parked until the app's close: nothing to time meanwhile."""
        self.lib.tas_fp_flow_snap(self.fp.handle, conn.flow_id)   # a change from now wakes it
        self._check_close(conn, f, now)
        if conn.state == ESTABLISHED and not conn.parked:
            self._park(conn)

    # ---- idle connections: parked until something changes -------------------

    def _may_park(self, conn, flags):
        """Open (CLOSE_WAIT too), or our FIN acknowledged: half-closed by
        its app (shutdown), or FIN_WAIT2 (closed, no FIN from the peer yet;
        its timer runs from a deadline)."""
        lib = self.lib
        busy = flags & self._busy_flags
        if busy & ~self._fin_flags:
            return False
        if busy and not flags & lib.TAS_FLF_TXFIN_ACKED:
            return False        # our FIN to send or in flight, or the close just came
        if not (conn.app_closed or conn.orphan or flags & lib.TAS_FLF_APP_CLOSED):
            return True
        return bool(flags & lib.TAS_FLF_TXFIN_ACKED and not flags & lib.TAS_FLF_RXFIN)

    def _idle(self, conn, f):
        """Nothing for the tick to do on this flow until it changes: nothing
        queued or in flight (no timeout to run), no close under way but
        FIN_WAIT2's timer, the congestion controller settled (cc.py), and
        the flow in the state this visit just dealt with (cnt_txb and
        rx_next_seq as the timestamp refresh last saw them)."""
        flags = f.flags
        return (f.tx_sent == 0 and f.tx_avail == 0 and conn.rto_backoff == 0 and
                self._may_park(conn, flags) and (conn.fin_wait2_since or not conn.app_closed) and
                (not conn.ts_ok or conn.activity == (f.cnt_txb, f.rx_next_seq)) and
                (conn.cc is None or conn.cc.settled(f)))

    def _park(self, conn):
        if self.lib.tas_fp_flow_park(self.fp.handle, conn.flow_id) != 0:
            return
        conn.parked, conn.park_tick = True, self.tick_no
        self.parked[conn.flow_id] = conn
        self.awake.pop(conn, None)
        if conn.ts_ok:
            self.ts_watch[conn] = None
        if conn.fin_wait2_since:
            self.fw2_watch[conn] = None
        self.stats.add("tcp_idle_parks")

    def _unpark(self, conn):
        if not conn.parked:
            return
        conn.parked = False
        self.lib.tas_fp_flow_unpark(self.fp.handle, conn.flow_id)
        self.parked.pop(conn.flow_id, None)
        self.ts_watch.pop(conn, None)
        self.fw2_watch.pop(conn, None)

    def _wake(self, conn):
        """Back on the tick's list, as if every tick since it was parked had
        visited it: those visits would only have moved its timeout clock
        (una_since) and its controller's clock, to the last tick."""
        if not conn.parked:
            return
        self._unpark(conn)
        self.awake[conn] = None
        conn.una_since = self.tick_at
        if conn.cc is not None:
            conn.cc.resume(self.tick_at, self.tick_no - conn.park_tick)
        self.stats.add("tcp_idle_wakes")

    def _wake_changed(self, now):
        """Wake the parked flows the fast path changed since we looked (or
        that have data to send), and those due a timestamp refresh or their
        FIN_WAIT2 timeout.  (Both watch lists are in park order, about
        deadline order: one duration each, and a flow parks within a few
        ticks of the event its deadline counts from.)"""
        lib, h, woken = self.lib, self.fp.handle, self._woken
        while self.parked:      # (none: nothing to ask, as under pure churn)
            n = lib.tas_fp_flows_woken(h, woken, WOKEN_BATCH)
            for i in range(n):
                conn = self.parked.get(woken[i])
                if conn is not None:
                    self._wake(conn)
            if n < WOKEN_BATCH:
                break
        refresh = self.cfg.tcp.ts_refresh_s if self.ts_watch else 0
        while self.ts_watch:
            conn = next(iter(self.ts_watch))
            if now - conn.active_since < refresh:
                break
            self._wake(conn)
        limit = self.cfg.tcp.fin_wait2_ms / 1000 if self.fw2_watch else 0
        while self.fw2_watch:
            conn = next(iter(self.fw2_watch))
            if now - conn.fin_wait2_since <= limit:
                break
            self._wake(conn)

    def _refresh_timestamps(self, conn, f, now):
        """Our TSval ticks in microseconds, so after about 36 idle minutes the
        peer's PAWS check would take it for an old segment and drop it; an
        idle flow therefore sends a pure ACK every tcp.ts_refresh_s."""
        if not conn.ts_ok:
            return
        activity = (f.cnt_txb, f.rx_next_seq)
        if activity != conn.activity:
            conn.activity, conn.active_since = activity, now
        elif now - conn.active_since >= self.cfg.tcp.ts_refresh_s:
            self.lib.tas_fp_flow_ack(self.fp.handle, conn.flow_id)
            self.stats.add("tcp_ts_refresh_acks")
            conn.active_since = now

    def _rto(self, f):
        interval = max(f.rtt_est_us, 1) * self.cfg.cc.interval_rtts / 1e6
        base = max(self.cfg.tcp.rto_intervals * interval, self.cfg.tcp.rto_min_ms / 1000)
        return base

    def _check_timeout(self, conn, f, now):
        fin_out = (f.flags & self.lib.TAS_FLF_TXFIN_SENT and
                   not f.flags & self.lib.TAS_FLF_TXFIN_ACKED)
        outstanding = f.tx_sent > 0 or fin_out
        window_closed = f.tx_avail > 0 and f.snd_wnd <= f.tx_sent
        if f.tx_una != conn.last_una or not (outstanding or window_closed):
            conn.last_una, conn.una_since, conn.rto_backoff = f.tx_una, now, 0
            conn.orphan_timeouts, conn.rto_fired_us = 0, None
            return
        rto = self._rto(f) * (2 ** conn.rto_backoff)
        # How long the flow has been stuck, by the fast path's clock: since
        # tx_una last moved or the flight left an idle flow (or since our last
        # timeout).  Our own view (una_since) is only when a tick first saw
        # it: a tick that comes late (this CPU is shared) would count the
        # time before the data was even sent.  The smaller of the two also
        # guards against the 32-bit microsecond clock's wrap.
        fnow = self._ts()
        since = f.tx_progress_us
        if conn.rto_fired_us is not None and _u32(conn.rto_fired_us - since) < 1 << 31:
            since = conn.rto_fired_us
        stuck = min(_u32(fnow - since) / 1e6, now - conn.una_since)
        if stuck < rto:
            return
        # The fast path must have looked at every segment that arrived by
        # the deadline: ACKs waiting in its RX ring (its core descheduled or
        # asleep) are no timeout.  Otherwise make it poll and look again.
        deadline = _u32(fnow - int((stuck - rto) * 1e6))
        drained = self.lib.tas_fp_queue_drained_us(self.fp.handle, f.queue)
        if _u32(drained - deadline) >= 1 << 31:
            self.lib.tas_fp_queue_kick(self.fp.handle, f.queue)
            self.stats.add("tcp_rto_deferred")
            return
        if f.tx_una != conn.last_una:
            return              # the ACK was in the ring: the next tick resets
        if conn.orphan:
            conn.orphan_timeouts += 1
            if conn.orphan_timeouts > ORPHAN_RETRIES:
                self.stats.add("tcp_orphan_timeouts")
                self._abort(conn)
                return
        # The sequence number has not moved for the timeout: retransmit
        # (go-back-N in the fast path) or probe a closed window.
        if outstanding:
            self.lib.tas_fp_flow_retransmit(self.fp.handle, conn.flow_id)
            self.stats.add("tcp_timeouts")
            if conn.cc is not None:
                conn.cc.on_timeout()
        else:
            self.lib.tas_fp_flow_probe(self.fp.handle, conn.flow_id)
            self.stats.add("tcp_window_probes")
        conn.una_since, conn.rto_fired_us = now, fnow
        conn.rto_backoff = min(conn.rto_backoff + 1, 6)

    def _check_close(self, conn, f, now):
        self._app_closed_quietly(conn, f)
        if self._reset_quietly(f):
            if conn.app_closed:
                self._on_reset(conn)
            return
        if self._close_discards(conn, f):
            return
        rxfin = bool(f.flags & self.lib.TAS_FLF_RXFIN)
        fin_acked = bool(f.flags & self.lib.TAS_FLF_TXFIN_ACKED)
        if rxfin and not conn.app_closed:
            conn.peer_closed_first = True
            return                                   # CLOSE_WAIT: the app decides
        if not conn.app_closed:
            return
        if fin_acked and rxfin:
            snd_nxt, rcv_nxt = f.tx_una, f.rx_next_seq
            self._remove_flow(conn)
            if not conn.peer_closed_first and self.cfg.tcp.time_wait_ms > 0:
                expiry = now + self.cfg.tcp.time_wait_ms / 1000
                self._tw_add(conn.key, (expiry, snd_nxt, rcv_nxt, conn.peer_mac))
                self.tw_expiry.append((expiry, conn.key))
            self._forget(conn)
            self.stats.add("tcp_closed")
        elif fin_acked:                               # FIN_WAIT_2
            if not conn.fin_wait2_since:
                conn.fin_wait2_since = now
            elif now - conn.fin_wait2_since > self.cfg.tcp.fin_wait2_ms / 1000:
                self._abort(conn)

