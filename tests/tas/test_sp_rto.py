"""Retransmission timeouts in the slow path (tas/slowpath/tcp.py
_check_timeout) only for flows that really are stuck.

Both ends under TAS on this 2-CPU machine saw spurious timeouts with no
packet lost: the slow path timed a flow from when its own tick first saw it
outstanding, so a tick that came late (its CPU shared) counted time before
the data was even sent; and ACKs still waiting in the fast path's RX ring
(its core descheduled) looked like no ACK at all.  Each timeout ends slow
start and halves the rate.  Here the fast path is the real flow struct and
a clock the test sets: the fast path's progress stamp (tx_una moved, or a
flight left an idle flow) and its queue's drained stamp decide."""
import os

import pytest

from bindings import _tasfp
from bindings import stats as kbstats
from tas import config
from tas.slowpath.arp import ArpTable
from tas.slowpath.packets import ip_bytes, mac_bytes
from tas.slowpath.quota import UidQuota
from synfast_standin import ListenerTable
from tas.slowpath.tcp import ESTABLISHED, Conn, TcpManager

pytestmark = pytest.mark.fast

MS = 1000     # fast-path clock ticks (us) per millisecond


class FastPathClock(ListenerTable):
    """The fast-path calls the timeout makes: its microsecond clock, the
    time its queue's RX ring was last emptied, retransmit/probe/kick."""

    def __init__(self):
        super().__init__()
        self.ffi, self.lib, self.handle = _tasfp.ffi, self, None
        self.now_us = 5_000_000
        self.drained_us = self.now_us
        self.flow = self.ffi.new("struct tas_flow *")
        self.retransmits = self.probes = self.kicks = 0

    def __getattr__(self, name):            # TAS_* constants
        return getattr(_tasfp.lib, name)

    def tas_fp_ts_now(self, handle):
        return self.now_us & 0xFFFFFFFF

    def tas_fp_queue_drained_us(self, handle, q):
        return self.drained_us & 0xFFFFFFFF

    def tas_fp_queue_kick(self, handle, q):
        self.kicks += 1

    def tas_fp_flow(self, handle, fid):
        return self.flow

    def tas_fp_flow_retransmit(self, handle, fid):
        self.retransmits += 1

    def tas_fp_flow_probe(self, handle, fid):
        self.probes += 1


@pytest.fixture
def rto():
    page = kbstats.Writer("tas", f"sp-rto-test-{os.getpid()}")
    cfg = config.load(overrides={"tcp.rto_min_ms": 200})
    fp = FastPathClock()
    arp = ArpTable(mac_bytes(cfg.tas.mac), ip_bytes(cfg.tas.ip), lambda f: None, page)
    m = TcpManager(cfg, fp, page, arp, lambda f: None, UidQuota(cfg, page))
    conn = Conn((ip_bytes("10.0.0.1"), 80, 40000), None, 0, ESTABLISHED, 1, flow_id=0)
    f = fp.flow
    f.flags = _tasfp.lib.TAS_FLF_ACTIVE
    f.tx_una, f.snd_wnd, f.rtt_est_us = 1000, 1 << 20, 50
    yield m, fp, conn, f
    page.close()


def counter(m, name):
    return kbstats.read("tas", m.stats.instance).get(name, 0)


def tick(m, fp, conn, f, now_s):
    """One slow-path timer check at slow-path time now_s; the fast-path
    clock is wherever the test put it."""
    m._check_timeout(conn, f, now_s)


def test_a_late_tick_does_not_time_data_from_before_it_was_sent(rto):
    m, fp, conn, f = rto
    tick(m, fp, conn, f, 10.0)                 # idle: nothing outstanding
    # The next tick comes 500 ms late.  Meanwhile the app wrote and the fast
    # path sent 64 KiB 1 ms ago; its ACK is still on the way.
    fp.now_us += 500 * MS
    fp.drained_us = fp.now_us
    f.tx_sent, f.tx_progress_us = 65536, fp.now_us - 1 * MS
    tick(m, fp, conn, f, 10.5)
    assert fp.retransmits == 0
    assert counter(m, "tcp_timeouts") == 0


def test_acks_waiting_in_the_rx_ring_defer_the_timeout(rto):
    m, fp, conn, f = rto
    tick(m, fp, conn, f, 10.0)
    f.tx_sent, f.tx_progress_us = 65536, fp.now_us
    tick(m, fp, conn, f, 10.01)                # outstanding from here
    # 300 ms later by both clocks, but the fast path last emptied its RX
    # ring 100 ms after the data went out: the ACK may be sitting there.
    fp.now_us += 300 * MS
    fp.drained_us = fp.now_us - 200 * MS
    tick(m, fp, conn, f, 10.31)
    assert fp.retransmits == 0 and fp.kicks == 1
    assert counter(m, "tcp_rto_deferred") == 1
    # Its core polls (the kick): the ACK was there and tx_una moved.
    f.tx_una += 65536
    f.tx_sent, f.tx_progress_us = 0, fp.now_us
    fp.drained_us = fp.now_us
    tick(m, fp, conn, f, 10.32)
    assert fp.retransmits == 0
    assert counter(m, "tcp_timeouts") == 0


def test_a_flow_really_stuck_times_out_once_the_fast_path_has_looked(rto):
    m, fp, conn, f = rto
    tick(m, fp, conn, f, 10.0)
    f.tx_sent, f.tx_progress_us = 65536, fp.now_us
    tick(m, fp, conn, f, 10.01)
    fp.now_us += 150 * MS
    fp.drained_us = fp.now_us
    tick(m, fp, conn, f, 10.15)                # 150 ms: not yet
    assert fp.retransmits == 0
    fp.now_us += 60 * MS
    fp.drained_us = fp.now_us - 5 * MS         # polled after the deadline
    tick(m, fp, conn, f, 10.21)
    assert fp.retransmits == 1
    assert counter(m, "tcp_timeouts") == 1
    # Backed off: the next one is 400 ms after this one, not 200.
    fp.now_us += 250 * MS
    fp.drained_us = fp.now_us
    tick(m, fp, conn, f, 10.46)
    assert fp.retransmits == 1
    fp.now_us += 200 * MS
    fp.drained_us = fp.now_us
    tick(m, fp, conn, f, 10.66)
    assert fp.retransmits == 2


def test_a_closed_window_is_probed_after_the_timeout(rto):
    m, fp, conn, f = rto
    f.tx_avail, f.snd_wnd, f.tx_progress_us = 4096, 0, fp.now_us
    tick(m, fp, conn, f, 10.0)
    tick(m, fp, conn, f, 10.01)
    fp.now_us += 210 * MS
    fp.drained_us = fp.now_us
    tick(m, fp, conn, f, 10.21)
    assert fp.probes == 1 and fp.retransmits == 0
    assert counter(m, "tcp_window_probes") == 1
