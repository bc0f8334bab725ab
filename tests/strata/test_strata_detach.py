"""Detach releases what attach took: libstrata's own close() of the pool's
lock fd goes through its own shim, which refuses to close the lock fd of a
mounted pool (an application must not close it under Strata); detach used to
hit that guard and leak one fd per attach."""
import subprocess
import sys

import pytest

from strata_helpers import ROOT

pytestmark = pytest.mark.fast

CYCLES = """
import os, sys
from strata import api
L = api.lib()
pool = sys.argv[1].encode()
api.check(L.strata_mkfs(pool, 64 << 20, 4, 1 << 20, 256), "mkfs")
before = len(os.listdir("/proc/self/fd"))
for _ in range(5):
    api.check(L.strata_attach(pool), "attach")
    L.strata_detach()
print(before, len(os.listdir("/proc/self/fd")))
"""


def test_attach_detach_cycles_leak_no_fd(pool_path):
    r = subprocess.run([sys.executable, "-c", CYCLES, pool_path], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": ROOT, "STRATA_QUIET": "1"})
    assert r.returncode == 0, r.stderr
    before, after = map(int, r.stdout.split())
    assert after == before, f"{after - before} fds leaked over 5 attach/detach cycles"
