"""The one stats format (include/kb/stats.h, bindings/stats.py): a page holds
every counter a component registers, and the pages of killed writers do not
pile up in /dev/shm."""
import os
import subprocess
import sys
import uuid

import pytest

from bindings import stats

pytestmark = pytest.mark.fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_page_holds_hundreds_of_counters():
    w = stats.Writer("statstest", f"many-{uuid.uuid4().hex[:6]}")
    try:
        for k in range(300):          # the daemon alone registers ~80
            w.add(f"counter_{k}", k)
        got = stats.read(w.component, w.instance)
        assert len(got) == 300 and got["counter_299"] == 299
    finally:
        w.close()


def test_a_new_writer_sweeps_pages_of_dead_writers():
    """A writer killed without closing leaves its page; the next writer of
    the component (through either create call) removes it, and keeps the
    pages of live writers."""
    inst = f"dead-{uuid.uuid4().hex[:6]}"
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from bindings import stats\n"
            "w = stats.Writer('statstest', %r); w.add('x', 1); os._exit(0)\n") % (ROOT, inst)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    dead = stats.page_path("statstest", inst)
    assert os.path.exists(dead)
    live = stats.Writer("statstest", f"live-{uuid.uuid4().hex[:6]}")
    try:
        assert not os.path.exists(dead)
        assert os.path.exists(stats.page_path("statstest", live.instance))
    finally:
        live.close()


def test_sweep_removes_stale_temporary_names():
    """A writer killed between creating its page's temporary name and the
    rename leaves the temporary file: an old one is removed by the next
    writer, a fresh one (a creator in progress) is kept."""
    tag = uuid.uuid4().hex[:6]
    stale = f"/dev/shm/.kbstats.statstest.{tag}-old.AbCdEf"
    fresh = f"/dev/shm/.kbstats.statstest.{tag}-new.AbCdEf"
    for p in (stale, fresh):
        open(p, "w").close()
    os.utime(stale, (0, 1_000_000))        # long ago
    w = stats.Writer("statstest", f"sweeper-{tag}")
    try:
        assert not os.path.exists(stale)
        assert os.path.exists(fresh)
    finally:
        w.close()
        os.unlink(fresh)
