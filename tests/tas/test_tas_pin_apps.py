"""fastpath.pin_apps: an app's thread that opens a TAS socket is moved to
the CPU of the fast-path core serving it (issue 14: on two CPUs the
scheduler put iperf3 and its daemon's core on different CPUs about a third
of the time, and every received byte then crossed between the CPUs twice
more; on a VM whose CPUs sit on different dies that halved TAS-to-TAS
throughput).  A thread whose CPU set leaves that CPU out is left alone,
and without the key nothing moves."""
import json
import os
import subprocess
import sys

import pytest

from tas.run import environ
from tasd import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Prints the thread's CPUs before and after its first TAS socket, and the
# threads libtas pinned (its stats page).
PROBE = ("import json, os, socket, sys\n"
         f"sys.path.insert(0, {ROOT!r})\n"
         "from bindings import stats\n"
         "before = sorted(os.sched_getaffinity(0))\n"
         "s = socket.socket()\n"
         "after = sorted(os.sched_getaffinity(0))\n"
         "pinned = stats.read('libtas', str(os.getpid())).get('threads_pinned')\n"
         "print(json.dumps([before, after, pinned]))\n")


def probe(instance, prefix=()):
    out = subprocess.run([*prefix, sys.executable, "-c", PROBE], env=environ(instance),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def fast_path_cpu(pid):
    """The CPU the daemon's fast-path thread (rte-worker-N) runs on."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
        if s[s.index("(") + 1:s.rindex(")")].startswith("rte-worker"):
            return int(s[s.rindex(")") + 2:].split()[36])
    raise AssertionError("no fast-path thread (rte-worker-N)")


@pytest.fixture
def cpus():
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.fail("this machine gives the test one CPU: the suite needs two "
                    "(the fast path owns one), so this is a broken setup, not a pass")
    return allowed


def test_app_runs_on_its_fast_path_cpu(tmp_path, require_root, cpus):
    d = Daemon(tmp_path, extra="[fastpath]\npin_apps = true").start()
    try:
        fp_cpu = fast_path_cpu(d.proc.pid)
        before, after, pinned = probe(d.instance)
        assert before == cpus
        assert after == [fp_cpu] and pinned == 1
        # A thread kept off that CPU (taskset) keeps its own choice.
        other = next(c for c in cpus if c != fp_cpu)
        before, after, pinned = probe(d.instance, ("taskset", "-c", str(other)))
        assert before == after == [other] and pinned == 0
    finally:
        d.stop()


def test_apps_stay_where_they_are_by_default(tmp_path, require_root, cpus):
    d = Daemon(tmp_path).start()
    try:
        before, after, pinned = probe(d.instance)
        assert before == after == cpus and pinned == 0
    finally:
        d.stop()
