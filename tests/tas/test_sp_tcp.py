"""The slow path's TCP state machine before a flow reaches the fast path
(tas/slowpath/tcp.py TcpManager): resets for unknown segments (RFC 793),
passive open with option negotiation, backlog limits, listener bookkeeping
and a reset during the handshake.  Segments go in as real frames and the
replies come out as frames, parsed back with the slow path's own codec.
The one fast-path call these paths make (the timestamp clock) is a counter
here; established connections are tests/tas/test_tas_tcp.py's (root tier)."""
import errno
import os
import time
import types

import pytest

from bindings import _tasfp
from bindings import stats as kbstats
from tas import config
from tas.slowpath.appmem import Allocator
from tas.slowpath.apps import App
from tas.slowpath.arp import ArpTable
from tas.slowpath.quota import UidQuota
from synfast_standin import ListenerTable
from tas.slowpath.packets import ARP_REPLY, ETH_P_ARP, Arp, Eth, IPv4, ip_bytes, mac_bytes
from tas.slowpath.tcp import ESTABLISHED, SYN_RCVD, TcpManager
from tas.slowpath.tcp_packets import ACK, CWR, ECE, FIN, RST, SYN, Tcp, TcpOptions, frame

pytestmark = pytest.mark.fast

PEER_MAC, PEER_IP = mac_bytes("02:00:00:00:00:99"), ip_bytes("10.0.0.1")


class FastPathFlows(ListenerTable):
    """The fast-path calls the slow path makes before a connection is
    established: the TCP timestamp clock, the port's transmit MTU, and the
    flow table a passive open installs the half-open flow in (the SYN-ACK).
    Constants come from the real cffi module."""

    def __init__(self):
        super().__init__()
        self.ffi, self.lib, self.handle, self.t = _tasfp.ffi, self, None, 1000
        self.flows, self.injected = {}, []

    def __getattr__(self, name):            # TAS_* constants
        return getattr(_tasfp.lib, name)

    def tas_fp_ts_now(self, handle):
        self.t += 1
        return self.t

    def tas_fp_tx_mtu(self, handle):
        return 1500

    def tas_fp_flow_add(self, handle, init):
        fid = len(self.flows)
        self.flows[fid] = self.ffi.new("struct tas_flow *")
        return fid

    def tas_fp_flow(self, handle, fid):
        return self.flows[fid]

    def tas_fp_flow_remove(self, handle, fid):
        self.flows.pop(fid, None)

    def tas_fp_flow_count(self, handle):
        return len(self.flows)

    def tas_fp_flow_lock(self, f):
        pass

    def tas_fp_flow_unlock(self, f):
        pass

    def tas_fp_sp_inject(self, handle, frame, n):
        self.injected.append(bytes(frame[:n]))
        return 0


@pytest.fixture
def tcp():
    page = kbstats.Writer("tas", f"sp-tcp-test-{os.getpid()}")
    cfg = config.load(overrides={"tcp.mss": 1460, "buffers.rx_buf": 1 << 20})
    sent = []
    arp = ArpTable(mac_bytes(cfg.tas.mac), ip_bytes(cfg.tas.ip), sent.append, page)
    m = TcpManager(cfg, FastPathFlows(), page, arp, sent.append, UidQuota(cfg, page))
    m.sent, m.page, m.cfg = sent, page, cfg
    yield m
    page.close()


class SegmentAddresses:
    """Where the app's buffers would be: the stand-in flow table above only
    records the pointers, it never touches them."""

    def ptr(self, off, ctype="uint8_t *"):
        return _tasfp.ffi.cast(ctype, 0x10000000 + off)


def app(uid=0):
    a = App(1, None, None, (1, uid, uid))
    a.alloc = Allocator(4096, 4096 + (64 << 20))
    a.segment = SegmentAddresses()
    return a


def deliver(m, seg):
    """A segment from the Linux peer, as the fast path passes it up."""
    raw = frame(PEER_MAC, m.my_mac, PEER_IP, m.my_ip, seg)
    eth = Eth.parse(raw)
    m.handle(eth, IPv4.parse(eth.payload), raw)


def replies(m):
    out = []
    for raw in m.sent:
        eth = Eth.parse(raw)
        assert eth.dst == PEER_MAC
        out.append(Tcp.parse(IPv4.parse(eth.payload)))
    m.sent.clear()
    return out


def counter(m, name):
    return kbstats.read("tas", m.page.instance).get(name, 0)


@pytest.mark.parametrize("seg, seq, ack, flags", [
    (Tcp(40000, 9, 5000, 0, SYN, 1000), 0, 5001, RST | ACK),          # SYN: ack = seq + 1
    (Tcp(40000, 9, 5000, 0, FIN, 1000, payload=b"abc"), 0, 5004, RST | ACK),  # data + FIN
    (Tcp(40000, 9, 5000, 777, ACK, 1000), 777, 0, RST),               # ACK: seq = its ack
])
def test_segments_for_no_connection_are_reset(tcp, seg, seq, ack, flags):
    deliver(tcp, seg)
    (rst,) = replies(tcp)
    assert (rst.sport, rst.dport, rst.seq, rst.ack, rst.flags) == (9, 40000, seq, ack, flags)
    assert counter(tcp, "tcp_rst_sent") == 1


def test_a_reset_is_never_answered(tcp):
    deliver(tcp, Tcp(40000, 9, 5000, 0, RST, 0))
    assert replies(tcp) == []


def test_syn_to_a_listener_gets_a_synack_with_negotiated_options(tcp):
    a = app()
    st, lid = tcp.listen(a, 0, 80, 16)
    assert st == 0
    opts = TcpOptions(mss=9000, wscale=7, ts=(123456, 0))
    deliver(tcp, Tcp(40000, 80, 0xFFFFFFFF, 0, SYN | ECE | CWR, 29200, opts))
    (sa,) = replies(tcp)
    conn = tcp.conns[(PEER_IP, 80, 40000)]
    assert sa.flags == SYN | ACK | ECE              # ECN agreed (cfg tcp.ecn on)
    assert sa.ack == 0 and sa.seq == conn.iss       # irs + 1 wraps
    assert sa.window == 65535                       # a SYN's window is unscaled
    assert sa.options.mss == 1460
    assert sa.options.wscale == tcp.rcv_wscale == 5  # 1 MiB receive buffer
    assert sa.options.ts[1] == 123456               # echoes the peer's tsval
    assert conn.state == SYN_RCVD and conn.ecn
    assert conn.mss == 1460 - 12                    # timestamps take 12 bytes
    assert (conn.snd_wscale, conn.snd_wnd) == (7, 29200)
    assert tcp.arp.lookup(PEER_IP) == PEER_MAC      # learnt from the SYN
    # our SYN-ACK was lost: the peer's retransmitted SYN gets it again
    deliver(tcp, Tcp(40000, 80, 0xFFFFFFFF, 0, SYN, 29200, opts))
    (again,) = replies(tcp)
    assert (again.seq, again.ack, again.flags & (SYN | ACK)) == (conn.iss, 0, SYN | ACK)


def test_options_the_peer_did_not_offer_are_not_sent(tcp):
    tcp.listen(app(), 0, 80, 16)
    deliver(tcp, Tcp(40000, 80, 1, 0, SYN, 8192))
    (sa,) = replies(tcp)
    assert sa.flags == SYN | ACK                    # no ECE without ECE|CWR
    assert sa.options.wscale is None and sa.options.ts is None
    conn = tcp.conns[(PEER_IP, 80, 40000)]
    assert conn.mss == 536 and not conn.ts_ok       # RFC 1122 default MSS


def test_backlog_counts_half_open_connections(tcp):
    a = app()
    tcp.listen(a, 0, 80, 2)
    for port in (40001, 40002, 40003):
        deliver(tcp, Tcp(port, 80, 1, 0, SYN, 8192))
    assert len(replies(tcp)) == 2
    assert counter(tcp, "tcp_backlog_drops") == 1
    assert len(a.conns) == 2


def test_reset_during_the_handshake_frees_the_slot_and_buffers(tcp):
    a = app()
    _, lid = tcp.listen(a, 0, 80, 1)
    free_before = list(a.alloc.free)
    deliver(tcp, Tcp(40001, 80, 1, 0, SYN, 8192))
    assert a.alloc.free != free_before
    deliver(tcp, Tcp(40001, 80, 2, 0, RST, 0))
    assert a.alloc.free == free_before and not a.conns and not tcp.conns
    assert tcp.listener_ids[lid].half_open == 0
    deliver(tcp, Tcp(40002, 80, 1, 0, SYN, 8192))   # the backlog slot is free again
    assert [r.flags & (SYN | ACK) for r in replies(tcp)] == [SYN | ACK, SYN | ACK]


def test_a_worker_of_another_uid_joins_with_the_inherited_key_only(tcp):
    # nginx: the master (root) listens on port 80, its workers switch to
    # nobody and accept on the inherited listener; an unrelated process of
    # that uid, which does not know the port's key, may not join
    master, worker, stranger = app(0), app(65534), app(65534)
    st, lid = tcp.listen(master, 0, 80, 8)
    key = tcp.listener_ids[lid].join_key
    assert st == 0 and key != 0
    assert tcp.listen(stranger, 0, 80, 8, shared=True)[0] == -errno.EACCES   # low port
    assert tcp.listen(stranger, 0, 80, 8, shared=True, join_key=key ^ 2)[0] == -errno.EACCES
    st, wid = tcp.listen(worker, 0, 80, 8, shared=True, join_key=key)
    assert st == 0 and tcp.listener_ids[wid].join_key == key
    assert tcp.listener_ids[wid].group is tcp.listener_ids[lid].group
    assert tcp.listen(worker, 0, 80, 8, join_key=key)[0] == -errno.EACCES   # not a join
    # above 1024 the same: the key, not the uid, lets a worker in
    st, lid2 = tcp.listen(master, 0, 8080, 8)
    assert tcp.listen(stranger, 0, 8080, 8, shared=True)[0] == -errno.EADDRINUSE
    assert tcp.listen(stranger, 0, 8080, 8,
                      join_key=tcp.listener_ids[lid2].join_key)[0] == -errno.EADDRINUSE
    assert tcp.listen(stranger, 0, 8080, 8, shared=True,
                      join_key=tcp.listener_ids[lid2].join_key)[0] == 0
    assert tcp.listener_ids[lid2].join_key != key          # one key per port group


def test_listen_and_accept_errors(tcp):
    a, b = app(), app()
    st, eph = tcp.listen(a, 0, 0, 8)              # bind to port 0: an ephemeral one
    assert st == 0 and tcp.listener_ids[eph].port in tcp.ephemeral
    assert tcp.listen_close(a, eph) == 0
    assert tcp.listen(a, 0, 70000, 8)[0] == -errno.EINVAL
    st, lid = tcp.listen(a, 0, 80, 8)
    assert tcp.listen(b, 0, 80, 8)[0] == -errno.EADDRINUSE
    assert tcp.accept(a, lid) == (-errno.EAGAIN, None)
    assert tcp.accept(b, lid) == (-errno.EBADF, None)      # not b's listener
    assert tcp.listen_close(b, lid) == -errno.EBADF
    assert tcp.listen_close(a, lid) == 0
    assert tcp.listen(b, 0, 80, 8)[0] == 0                 # the port is free again


def syns_to(m, port):
    return [t for t in replies(m) if t.flags & (SYN | ACK) == SYN and t.dport == port]


def test_connect_sends_its_syn_at_once_to_a_known_peer(tcp):
    """The SYN goes with the connect request, not at the next tick (which
    made every connect() through TAS wait up to 10 ms)."""
    tcp.arp.learn(PEER_IP, PEER_MAC)
    assert tcp.connect(app(), 0, PEER_IP, 8280, 1) == 0
    assert len(syns_to(tcp, 8280)) == 1
    assert counter(tcp, "tcp_syn_sent") == 1


def test_connect_to_an_unresolved_peer_sends_its_syn_when_arp_answers(tcp):
    assert tcp.connect(app(), 0, PEER_IP, 8281, 1) == 0
    (req,) = tcp.sent                       # an ARP request, no SYN yet
    assert Eth.parse(req).ethertype == ETH_P_ARP
    tcp.sent.clear()
    reply = Arp(ARP_REPLY, PEER_MAC, PEER_IP, tcp.my_mac, tcp.my_ip)
    tcp.arp.handle(PEER_MAC, reply.pack())
    assert len(syns_to(tcp, 8281)) == 1


def test_a_segment_for_a_flow_the_peer_reset_is_answered_not_reinjected(tcp):
    """A quiet flow the fast path marked reset stays installed until its
    app closes it; a segment for it (reordered behind the peer's RST) comes
    up from the fast path, which passes it up again if it is sent back: it
    gets a RST, as from a Linux that has no socket for it."""
    tcp.listen(app(), 0, 80, 16)
    deliver(tcp, Tcp(40000, 80, 1, 0, SYN, 8192))
    replies(tcp)
    conn = tcp.conns[(PEER_IP, 80, 40000)]
    conn.state = ESTABLISHED
    f = tcp.fp.tas_fp_flow(None, conn.flow_id)
    f.flags = _tasfp.lib.TAS_FLF_QUIET | _tasfp.lib.TAS_FLF_RESET | _tasfp.lib.TAS_FLF_ACTIVE
    deliver(tcp, Tcp(40000, 80, 2, conn.iss + 1, ACK, 8192))
    (r,) = replies(tcp)
    assert r.flags & RST
    assert tcp.fp.injected == [] and counter(tcp, "tcp_segs_after_reset") == 1


def test_a_connector_leaves_most_of_a_small_segment_to_the_app(tcp):
    """The pool of an app's connector (connector.py) takes at most a quarter
    of what the segment has: with tcp.connect_pool flows' buffers it took
    them all, and the app's next slow connect failed with ENOMEM."""
    a = app()
    flow = tcp.cfg.buffers.rx_buf + tcp.cfg.buffers.tx_buf
    a.alloc = Allocator(4096, 4096 + 40 * flow)
    lst = tcp.connectors.ensure(a)
    assert tcp.pool_count(lst) == 10
    tcp._refill(lst)                   # (the tick's: it does not creep up)
    assert tcp.pool_count(lst) == 10
    assert tcp.connect(a, 0, PEER_IP, 80, 1) == 0
    assert a.alloc.free_bytes() == 29 * flow


def fast_connect(tcp, a, lst, req_id, port):
    """The record of a connect the fast path opened (fp_tcp_connect.c) and
    its flow, still waiting for the SYN-ACK, as the sweep hands them over."""
    lib, ffi = tcp.lib, _tasfp.ffi
    fid = tcp.lib.tas_fp_flow_add(None, None)
    tcp.lib.tas_fp_flow(None, fid).flags = (lib.TAS_FLF_ACTIVE | lib.TAS_FLF_QUIET |
                                           lib.TAS_FLF_SYNSENT)
    rec = ffi.new("struct tas_syn_opened *")
    rec.flow_id, rec.listener_id, rec.iss, rec.req_id = fid, lst.id, 1000, req_id
    rec.peer_ip, rec.local_port, rec.peer_port = int.from_bytes(PEER_IP, "big"), port, 80
    rec.peer_mac, rec.flags = PEER_MAC, lib.TAS_SYN_OPENED_ACTIVE
    tcp._fast_opened(rec[0], time.monotonic())
    return tcp.conns[(PEER_IP, port, 80)]


def test_giving_up_on_a_fast_connect_stops_its_handshake_first(tcp):
    """The slow path's handshake timeout on a connect the fast path opened
    marks the flow reset under its lock before the app hears ETIMEDOUT, so
    a SYN-ACK arriving that moment goes to the slow path instead of
    completing it (the app would hear both).  One the fast path completed
    meanwhile is established, not timed out (the app heard TAS_ARX_OPENED)."""
    lib = tcp.lib
    a = app()
    told = []
    a.server = types.SimpleNamespace(
        send_opened=lambda app, conn, req_id, status=0: told.append((req_id, status)),
        send_event=lambda *args, **kw: None)
    lst = tcp.connectors.ensure(a)
    late = fast_connect(tcp, a, lst, 7, 40007)
    f = tcp.lib.tas_fp_flow(None, late.flow_id)
    late.retries = tcp.cfg.tcp.handshake_retries
    tcp._retry_handshake(late, tcp.now(), tcp._send_syn)
    assert told == [(7, -errno.ETIMEDOUT)]
    assert f.flags & lib.TAS_FLF_RESET
    assert late.key not in tcp.conns and late.flow_id not in tcp.lib.flows
    done = fast_connect(tcp, a, lst, 8, 40008)
    tcp.lib.tas_fp_flow(None, done.flow_id).flags &= ~lib.TAS_FLF_SYNSENT   # the SYN-ACK came
    done.retries = tcp.cfg.tcp.handshake_retries
    tcp._retry_handshake(done, tcp.now(), tcp._send_syn)
    assert done.state == ESTABLISHED and told == [(7, -errno.ETIMEDOUT)]
