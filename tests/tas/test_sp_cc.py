"""Congestion control rate updates (tas/slowpath/cc.py), one control interval
at a time.  The controllers read a real `struct tas_flow` (cffi, from the
header) and write rates through the one fast-path call they make,
tas_fp_flow_set_rate, recorded here; the daemon-level behaviour under loss is
tests/tas/test_tas_tcp.py's (root tier)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bindings import _tasfp
from tas import config
from tas.slowpath.cc import RESTART_S, DctcpRate, Timely

pytestmark = pytest.mark.fast

RTT_US = 100          # interval = 2 RTTs = 200 us; steps below are 1 ms apart
STEP_S = 0.001
# Bytes ACKed in a step that carried less than any rate here (800 kbps):
# slow start doubles the rate, not what the ACKs carried
ACKED = 100


class RateSink:
    """The fast path as a rate controller sees it: one call, recorded."""

    def __init__(self):
        self.handle, self.lib, self.rates = None, self, []

    def tas_fp_flow_set_rate(self, handle, flow_id, kbps):
        self.rates.append((flow_id, kbps))


class Conn:
    flow_id = 7


def make(cls, **cc):
    cfg = config.load(overrides={f"cc.{k}": v for k, v in cc.items()})
    sink, flow = RateSink(), _tasfp.ffi.new("struct tas_flow *")
    flow.rtt_est_us = RTT_US
    ctl = cls(cfg, sink, Conn())
    ctl.update(flow, 0.0)            # the first call only takes the baseline
    return ctl, flow, sink, cfg.cc


def interval(ctl, flow, ackb=0, ecnb=0, frexmits=0, txb=10**8, rtt_us=RTT_US):
    """One control interval in which the flow sent txb and had ackb ACKed."""
    flow.cnt_ackb += ackb
    flow.cnt_ecnb += ecnb
    flow.cnt_frexmits += frexmits
    flow.cnt_txb += txb
    flow.rtt_est_us = rtt_us
    ctl.update(flow, ctl.last_time + STEP_S)
    return ctl.rate


def test_dctcp_slow_start_doubles_until_the_first_mark():
    ctl, f, sink, cc = make(DctcpRate, init_kbps=10000, step_kbps=1000)
    assert sink.rates == [(7, 10000)]
    assert interval(ctl, f, ackb=ACKED) == 20000
    assert interval(ctl, f, ackb=ACKED) == 40000
    rate = interval(ctl, f, ackb=ACKED, ecnb=ACKED // 2)     # half the bytes marked
    alpha = cc.dctcp_g * 0.5
    assert ctl.alpha == pytest.approx(alpha)
    assert rate == pytest.approx(40000 * (1 - alpha / 2))
    assert not ctl.slow_start
    assert interval(ctl, f, ackb=ACKED) == pytest.approx(rate + 1000)   # additive now
    assert ctl.alpha == pytest.approx((1 - cc.dctcp_g) * alpha)         # alpha decays
    assert sink.rates[-1] == (7, int(ctl.rate))


def test_dctcp_halves_on_loss_and_never_drops_below_a_tenth_of_the_initial_rate():
    ctl, f, _, _ = make(DctcpRate, init_kbps=10000)
    assert interval(ctl, f, ackb=1000, frexmits=1) == 5000
    assert not ctl.slow_start
    ctl.on_timeout()                                      # an RTO also counts as loss
    assert interval(ctl, f) == 2500
    for _ in range(5):
        interval(ctl, f, frexmits=1)
    assert ctl.rate == 1000


def test_dctcp_no_update_before_the_interval_ends():
    ctl, f, sink, _ = make(DctcpRate)
    f.cnt_ackb += 100000
    ctl.update(f, ctl.last_time + RTT_US * 2 / 1e6 / 2)   # half an interval
    assert len(sink.rates) == 1 and ctl.rate == 10000


def test_app_limited_flow_is_clamped_to_what_it_sends():
    ctl, f, _, _ = make(DctcpRate, init_kbps=1000)
    for _ in range(6):
        interval(ctl, f, ackb=ACKED)                     # slow start to 64000
    assert ctl.rate == 64000
    # It now sends 2500 B per 1 ms (20000 kbps).  For RESTART_S it keeps the
    # rate its fastest interval (10**8 B) allows: a request/response flow
    # quiet for most intervals keeps the rate of its bursts ...
    for _ in range(int(0.75 * RESTART_S / STEP_S)):
        assert interval(ctl, f, txb=2500) == 64000
    # ... then the clamp is 1.2 x what it sends, before the algorithm
    # doubles the rate.
    for _ in range(int(0.5 * RESTART_S / STEP_S)):
        interval(ctl, f, txb=2500)
    assert ctl.rate == pytest.approx(1.2 * 20000)
    assert interval(ctl, f, ackb=2500, txb=2500) == pytest.approx(2 * 1.2 * 20000)


def test_a_request_response_flow_keeps_its_rate_between_bursts():
    """A burst of 64 KiB every 5 ms, nothing in between: the quiet
    intervals do not clamp the rate to cc.init_kbps (which would pace each
    burst past the fast path's credit at 10 Mbps); after RESTART_S of
    silence it restarts there."""
    ctl, f, _, cc = make(DctcpRate, init_kbps=10000)
    for _ in range(6):
        interval(ctl, f, ackb=ACKED * 1000, txb=ACKED * 1000)
    burst_kbps = 65536 * 8 / STEP_S / 1000
    for k in range(100):
        sent = 65536 if k % 5 == 0 else 0
        interval(ctl, f, ackb=sent, txb=sent)
        assert ctl.rate >= 1.2 * burst_kbps
    for _ in range(int(1.5 * RESTART_S / STEP_S)):
        interval(ctl, f, txb=0)
    assert ctl.rate == cc.init_kbps


def test_a_flow_held_back_with_bytes_waiting_is_not_clamped():
    """Bytes queued (for the rate or the window) but little sent: the
    receiver or a stall held it back, not the app (its rate is kept)."""
    ctl, f, _, _ = make(DctcpRate, init_kbps=1000)
    for _ in range(6):
        interval(ctl, f, ackb=ACKED)
    f.tx_avail = 1 << 20
    assert interval(ctl, f, ackb=2500, txb=2500) == 64000     # kept, not grown
    # ...and a rate that is not what holds a flow back never runs away
    for _ in range(40):
        interval(ctl, f, ackb=10**9, txb=10**9)
    assert ctl.rate <= 100_000_000


def test_a_spurious_timeout_is_undone():
    """The fast path found the ACK after the timeout echoing a timestamp from
    before the retransmission (tas_flow.cnt_spurious_rto): rate and slow
    start come back, as Linux undoes a spurious RTO."""
    ctl, f, sink, _ = make(DctcpRate, init_kbps=1000)
    for _ in range(5):
        interval(ctl, f, ackb=ACKED)
    assert ctl.rate == 32000 and ctl.slow_start
    f.rto_ts_us = 12345                   # the go-back is pending in the fast path
    ctl.on_timeout()
    assert interval(ctl, f) == 16000 and not ctl.slow_start
    f.cnt_spurious_rto += 1               # ...and its first ACK showed it spurious
    f.rto_ts_us = 0
    ctl.update(f, ctl.last_time + STEP_S / 10)     # within the interval: at once
    assert ctl.rate == 32000 and ctl.slow_start and sink.rates[-1] == (7, 32000)
    assert interval(ctl, f, ackb=ACKED) == 64000


def test_a_real_timeout_is_not_undone_later():
    ctl, f, _, _ = make(DctcpRate, init_kbps=1000)
    for _ in range(5):
        interval(ctl, f, ackb=ACKED)
    f.rto_ts_us = 12345
    ctl.on_timeout()
    assert interval(ctl, f) == 16000
    f.rto_ts_us = 0                       # resolved: not spurious
    interval(ctl, f, ackb=ACKED)
    f.cnt_spurious_rto += 1               # a later timeout's, with nothing saved
    interval(ctl, f, ackb=ACKED)
    assert not ctl.slow_start


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 1), st.booleans()), max_size=40))
def test_dctcp_invariants(steps):
    ctl, f, sink, cc = make(DctcpRate)
    for ackb, marked, loss in steps:
        interval(ctl, f, ackb=ackb, ecnb=int(ackb * marked), frexmits=int(loss))
        assert 0.0 <= ctl.alpha <= 1.0
        assert ctl.rate >= cc.init_kbps / 10
        assert sink.rates[-1] == (7, int(ctl.rate))


def test_timely_additive_below_tlow_multiplicative_above_thigh():
    ctl, f, _, cc = make(Timely, init_kbps=100000, step_kbps=1000, timely_tlow_us=30,
                         timely_thigh_us=150, timely_beta=0.8)
    assert interval(ctl, f, rtt_us=20) == 101000
    assert interval(ctl, f, rtt_us=300) == pytest.approx(101000 * (1 - 0.8 * (1 - 150 / 300)))


def test_timely_follows_the_rtt_gradient_between_the_thresholds():
    ctl, f, _, _ = make(Timely, init_kbps=100000, step_kbps=1000, timely_tlow_us=10,
                        timely_thigh_us=150, timely_beta=0.8)
    interval(ctl, f, rtt_us=50)                           # min_rtt 50, no gradient yet
    assert ctl.rate == 101000
    rate = interval(ctl, f, rtt_us=100)                   # rising: diff = 0.02 * 50 = 1
    assert ctl.diff == pytest.approx(1.0)
    assert rate == pytest.approx(101000 * (1 - 0.8 * (1.0 / 50)))
    interval(ctl, f, rtt_us=40)                           # falling: 0.98 - 0.02 * 60 < 0
    assert ctl.diff < 0
    assert ctl.rate == pytest.approx(rate + 1000)


def test_timely_halves_on_loss_and_ignores_intervals_without_an_rtt():
    ctl, f, _, _ = make(Timely, init_kbps=100000)
    assert interval(ctl, f, frexmits=1) == 50000
    assert interval(ctl, f, rtt_us=0) == 50000


def test_dctcp_slow_start_doubles_what_the_acks_carried():
    """Issue 14: the fast path sends a TX buffer's worth ahead of a new
    flow's 10 Mbps and then waits ~110 ms; an interval whose ACKs carried
    more than the rate doubles that, not the rate (before, each doubling
    waited for the next burst: 0.3 s to reach memif's 60 Gbps)."""
    ctl, f, _, _ = make(DctcpRate, init_kbps=10000)
    # 143,168 bytes ACKed in one 1 ms interval: 1,145,344 kbps
    assert interval(ctl, f, ackb=143168, txb=143168) == pytest.approx(2 * 1145344)
    # ...and an interval that carried less than the rate doubles the rate
    assert interval(ctl, f, ackb=1000, txb=10**8) == pytest.approx(4 * 1145344)
    # Out of slow start, the ACKed rate makes no jump: additive steps only
    rate = interval(ctl, f, ackb=100000, ecnb=50000)
    assert interval(ctl, f, ackb=10**8, txb=10**8) == pytest.approx(rate + ctl.cfg.step_kbps)


def test_the_first_interval_counts_from_the_flows_start():
    """A controller made when the flow was installed (its counters were 0)
    counts what the flow sent before its first update: the burst a new flow
    sends at once (one window) is its first interval's, not the baseline's
    (before, the burst vanished into the baseline and the flow then sat out
    110 ms at 10 Mbps with nothing to measure)."""
    cfg = config.load(overrides={"cc.init_kbps": 10000})
    sink, f = RateSink(), _tasfp.ffi.new("struct tas_flow *")
    f.rtt_est_us = RTT_US
    ctl = DctcpRate(cfg, sink, Conn(), start=5.0)
    f.cnt_ackb = f.cnt_txb = 143168
    f.tx_avail = 1 << 18
    ctl.update(f, 5.01)
    assert ctl.rate == pytest.approx(2 * 143168 * 8 / 0.01 / 1000)


@pytest.mark.parametrize("cls,history", [
    (DctcpRate, [RTT_US] * 5),
    (Timely, [20, 25, 20]),              # below Tlow: additive, the gradient unused
    (Timely, [300, 400, 300]),           # above Thigh: cut toward the floor
    (Timely, [100, 120, 60]),            # between, falling: additive
], ids=["dctcp", "timely-low", "timely-high", "timely-falling"])
def test_a_parked_controller_resumes_as_if_updated_every_tick(cls, history):
    """The slow path parks an idle flow once its controller is settled (an
    idle interval changed nothing) and skips its updates until it changes
    (tcp.py): resume() must leave it where an update every tick would have,
    and its reaction to new traffic must be the same."""
    kw = dict(init_kbps=100000, step_kbps=1000, timely_tlow_us=30, timely_thigh_us=150)
    ticked, f1, _, _ = make(cls, **kw)
    parked, f2, sink, _ = make(cls, **kw)
    for ctl, f in ((ticked, f1), (parked, f2)):
        for rtt in history:
            interval(ctl, f, ackb=ACKED * 1000, txb=ACKED * 1000, rtt_us=rtt)
    assert not parked.settled(f2)
    t, skipped = ticked.last_time, 0
    for _ in range(int(2.5 * RESTART_S / STEP_S)):   # idle: nothing sent, ACKed or lost
        t += STEP_S
        ticked.update(f1, t)
        if parked.settled(f2):
            skipped += 1                  # parked: no update
        else:
            parked.update(f2, t)
    # settled once the rate restarted (RESTART_S quiet), parked from then on
    assert parked.settled(f2) and skipped >= 1.4 * RESTART_S / STEP_S
    assert parked.rate <= ticked.cfg.init_kbps + 1000    # restarted after idle
    applied = len(sink.rates)
    parked.resume(t, skipped)
    assert len(sink.rates) == applied     # nothing to tell the fast path
    assert parked.last_time == ticked.last_time and parked.rate == ticked.rate
    if cls is Timely:
        assert parked.diff == pytest.approx(ticked.diff)
    for ctl, f in ((ticked, f1), (parked, f2)):
        interval(ctl, f, ackb=ACKED * 50, txb=ACKED * 50, rtt_us=history[-1] + 10)
    assert parked.rate == pytest.approx(ticked.rate)


def test_an_idle_update_that_still_moves_the_state_is_not_settled():
    """Timely between the thresholds with a rising RTT: every idle update
    still cuts the rate (the gradient decays, slowly): not settled."""
    ctl, f, _, _ = make(Timely, init_kbps=100000, step_kbps=1000, timely_tlow_us=10,
                        timely_thigh_us=150)
    interval(ctl, f, ackb=ACKED, rtt_us=50)
    interval(ctl, f, ackb=ACKED, rtt_us=100)
    for _ in range(int(1.2 * RESTART_S / STEP_S)):     # past the restart after idle
        interval(ctl, f, txb=0)
    for _ in range(20):
        interval(ctl, f, txb=0)
        assert not ctl.settled(f)
