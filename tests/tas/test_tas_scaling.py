"""Core scaling: cores switched on and off under live connections keep every
byte correct, and the automatic policy follows the measured load.

The daemons here have two fast-path cores (lcores 1 and 2; on a 2-CPU
machine lcore 2 shares CPU 0 with the slow path, see tas.eal.lcore_map).
"""
import errno
import json
import subprocess
import sys
import threading

import pytest

from bindings import stats
from deploy import transfers
from tas.app import TasApp, TasError
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

MIB = 1 << 20


def tasctl(d, *args):
    out = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, *args],
                         check=True, capture_output=True, text=True).stdout
    return out


def cores(d):
    return json.loads(tasctl(d, "cores", "--json"))


def counters(d):
    return stats.read("tas", d.instance)


class Transfers:
    """Bulk transfers both ways between TAS apps and the Linux peer, each in a
    thread with its own app (so contexts land on both queues)."""

    def __init__(self, d, nbytes, port0):
        self.results, self.errors = [], []
        self.threads = []
        for i, fn in enumerate([transfers.linux_to_tas, transfers.tas_to_linux] * 2):
            t = threading.Thread(target=self._run, args=(d, fn, port0 + i, nbytes, i + 1))
            self.threads.append(t)
            t.start()

    def _run(self, d, fn, port, nbytes, seed):
        try:
            app = TasApp(d.instance)
            try:
                n, same, _ = fn(d.netns, app, port, nbytes, seed)
                self.results.append((fn.__name__, n, same))
            finally:
                app.close()
        except Exception as e:  # reported by the test thread
            self.errors.append(repr(e))

    def alive(self):
        return any(t.is_alive() for t in self.threads)

    def join(self):
        for t in self.threads:
            t.join()
        assert not self.errors, self.errors
        return self.results


# net_tap: the kernel spreads flows over the tap's queues; net_af_packet on a
# veth: PACKET_FANOUT hashes them over the queue sockets.
@pytest.mark.parametrize("device", ["net_tap", "net_af_packet"])
def test_switching_cores_under_live_transfers_keeps_bytes(make_daemon, device):
    d = make_daemon(device=device, fp_cores=(1, 2), extra="[scaling]\nauto = false\n").start()
    assert cores(d)["scaling"]["active"] == 2, "pinned scaling starts with every core"
    xfers = Transfers(d, 48 * MIB, 7100)
    flips = 0
    while xfers.alive():
        tasctl(d, "cores", "--set", str(1 + flips % 2))
        flips += 1
    results = xfers.join()
    assert len(results) == 4
    for name, n, same in results:
        assert n == 48 * MIB, f"{name} moved {n} bytes"
        assert same, f"{name}: bytes differ"
    c = counters(d)
    assert flips >= 2, "the transfers ended before the cores changed"
    assert c["fp_core_removes"] >= 1 and c["fp_core_adds"] >= 1
    wait_until(lambda: counters(d)["tcp_flows_active"] == 0, "flows to close")


def test_pinning_reports_and_rejects_bad_counts(make_daemon):
    d = make_daemon(fp_cores=(1, 2)).start()
    st = cores(d)
    sc = st["scaling"]
    assert {k: sc[k] for k in ("active", "max", "min", "auto")} == \
        {"active": 1, "max": 2, "min": 1, "auto": True}
    assert all("queue_rx_pkts" in r for r in st["cores"])
    assert [r["active"] for r in st["cores"]] == [True, False]
    tasctl(d, "cores", "--set", "2")
    st = cores(d)
    assert st["scaling"]["active"] == 2 and st["scaling"]["auto"] is False
    bad = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, "cores", "--set", "3"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "core count must be 1..2" in bad.stderr
    tasctl(d, "cores", "--auto")
    assert cores(d)["scaling"]["auto"] is True
    text = tasctl(d, "cores")
    assert "of 2 fast-path cores active" in text


# Thresholds chosen so that the test's load surely adds a core (a busy
# machine may leave the fast path more idle than the defaults expect) and a
# quiet pair surely removes one: the policy under test is the same, only the
# bar moves.
EAGER = """
[scaling]
add_below_idle = 0.8
remove_above_idle = 1.8
"""


def test_autoscaling_follows_load(make_daemon):
    d = make_daemon(fp_cores=(1, 2), extra=EAGER).start()
    assert counters(d)["fp_cores_active"] == 1, "automatic scaling starts with one core"
    port = 7200
    while counters(d)["fp_core_adds"] == 0:
        assert port < 7260, "a core was never added under load"
        xfers = Transfers(d, 64 * MIB, port)
        port += 4
        wait_until(lambda: counters(d)["fp_core_adds"] > 0 or not xfers.alive(),
                   "a core to be added or the transfers to end", limit_s=600)
        for name, n, same in xfers.join():
            assert n == 64 * MIB and same, f"{name}: {n} bytes, equal={same}"
    # Idle again: the second core goes away.
    wait_until(lambda: counters(d)["fp_core_removes"] > 0 and counters(d)["fp_cores_active"] == 1,
               "an idle core to be removed")


def test_contexts_carry_their_own_flows(make_daemon):
    """An app with several contexts (own queues each, spread over the fast
    path's queues and so over both cores): flows opened on each move their
    bytes correctly; a context the app does not have is refused."""
    d = make_daemon(fp_cores=(1, 2), extra="[scaling]\nauto = false\n").start()
    with TasApp(d.instance) as app:
        ctxs = [0, app.create_context(), app.create_context()]
        assert ctxs == [0, 1, 2]
        for i, ctx in enumerate(ctxs):
            n, same, _ = transfers.linux_to_tas(d.netns, app, 7400 + i, 4 * MIB, i + 1, ctx=ctx)
            assert n == 4 * MIB and same, f"context {ctx}: Linux -> TAS"
            n, same, _ = transfers.tas_to_linux(d.netns, app, 7500 + i, 4 * MIB, i + 11, ctx=ctx)
            assert n == 4 * MIB and same, f"context {ctx}: TAS -> Linux"
        with pytest.raises(TasError) as e:
            app.connect("10.0.0.1", 7600, ctx=9)
        assert e.value.errno == errno.EINVAL
    assert counters(d)["app_contexts_created"] == 2
    wait_until(lambda: counters(d)["tcp_flows_active"] == 0, "flows to close")
