"""Core-scaling policy (tas/slowpath/scaling.py CoreScaler): decisions from
the cores' busy/total cycle counters, one core at a time with a hold after
each change, manual pinning.  The fast path's two calls (core load, set the
active count) are modelled by CoreLoads; the stats page is a real one.  The
real fast path is exercised by tests/tas/test_tas_scaling.py (root tier)."""
import os

import pytest

from bindings import _tasfp
from bindings import stats as kbstats
from tas import config
from tas.slowpath.scaling import CoreScaler

pytestmark = pytest.mark.fast

CYCLES = 1_000_000   # per core per interval


class CoreLoads:
    """The fast path as the scaler sees it: per-core busy/total cycles, and
    tas_fp_set_active_cores clamping the count to 1..ncores."""

    def __init__(self, ncores):
        self.ncores, self.ffi, self.lib, self.handle = ncores, _tasfp.ffi, self, None
        self.busy, self.total = [0] * ncores, [0] * ncores
        self.active = None

    def tas_fp_core_load(self, handle, core, busy, total):
        busy[0], total[0] = self.busy[core], self.total[core]

    def tas_fp_set_active_cores(self, handle, n):
        self.active = max(1, min(n, self.ncores))
        return self.active

    def run(self, busy_share):
        """One interval: each active core ran, busy for busy_share of it."""
        for i in range(self.active):
            self.total[i] += CYCLES
            self.busy[i] += int(CYCLES * busy_share)


@pytest.fixture
def page():
    w = kbstats.Writer("tas", f"sp-scaling-test-{os.getpid()}")
    yield w
    w.close()


def scaler(page, ncores=4, **sc):
    cfg = config.load(overrides={f"scaling.{k}": v for k, v in sc.items()})
    fp = CoreLoads(ncores)
    return CoreScaler(cfg, fp, page), fp


def tick(s, fp, busy_share):
    fp.run(busy_share)
    s.next = 0          # the interval is over (decisions, not timing, are tested)
    s.tick()
    return s.active


def test_starts_at_min_and_adds_one_core_per_decision_after_each_hold(page):
    s, fp = scaler(page, hold_intervals=2, min_cores=1)
    assert s.auto and s.active == fp.active == 1
    history = [tick(s, fp, 1.0) for _ in range(12)]
    # hold 2 intervals, decide; each change restarts the hold
    assert history == [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    assert kbstats.read("tas", page.instance)["fp_core_adds"] == 3


def test_idle_cores_are_removed_down_to_min(page):
    s, fp = scaler(page, hold_intervals=0, min_cores=2)
    assert [tick(s, fp, 1.0) for _ in range(2)] == [3, 4]
    # each change restarts the average, so a fully idle set shrinks at once
    assert [tick(s, fp, 0.0) for _ in range(5)] == [3, 2, 2, 2, 2]
    assert kbstats.read("tas", page.instance)["fp_core_removes"] == 2


def test_load_between_the_thresholds_keeps_the_count(page):
    s, fp = scaler(page, hold_intervals=0, add_below_idle=0.2, remove_above_idle=1.25)
    tick(s, fp, 1.0)
    tick(s, fp, 1.0)
    assert s.active == 3
    # 3 cores 60 % busy: 1.2 idle cores, between 0.2 and 1.25
    assert [tick(s, fp, 0.6) for _ in range(10)] == [3] * 10
    assert s.status()["idle_cores"] == pytest.approx(1.2, abs=0.01)


def test_the_idle_average_is_smoothed_by_seven_eighths(page):
    s, fp = scaler(page, hold_intervals=0, min_cores=2)
    assert [tick(s, fp, 1.0) for _ in range(3)] == [3, 4, 4]   # average now 0 idle
    # 4 idle cores per sample: 0.5, 0.94, 1.32 > 1.25 -> remove
    assert [tick(s, fp, 0.0) for _ in range(3)] == [4, 4, 3]


def test_a_core_blocked_all_interval_counts_as_idle(page):
    s, fp = scaler(page, hold_intervals=0)
    for _ in range(2):
        tick(s, fp, 1.0)
    assert s.active == 3
    fp.run(1.0)          # core 2 blocked all interval: its counters did not move
    fp.total[2] -= CYCLES
    fp.busy[2] -= CYCLES
    s.next = 0
    s.tick()
    assert s.idle_ewma == pytest.approx(1.0)


def test_manual_count_stops_the_policy_until_auto(page):
    s, fp = scaler(page, hold_intervals=0)
    s.set_manual(3)
    assert not s.auto and fp.active == 3
    assert [tick(s, fp, 0.0) for _ in range(3)] == [3, 3, 3]
    with pytest.raises(ValueError, match="1..4"):
        s.set_manual(5)
    s.set_auto()
    assert tick(s, fp, 0.0) == 2


def test_min_cores_at_max_turns_the_policy_off(page):
    s, fp = scaler(page, ncores=2, min_cores=4)
    assert (s.min, s.max, s.auto, s.active) == (2, 2, False, 2)
