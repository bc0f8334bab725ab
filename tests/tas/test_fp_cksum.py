"""The fast path's checksum (32-bit words into 64-bit sums, AVX2 where the
CPU has it) equals DPDK's rte_raw_cksum for every length and alignment."""
import os
import subprocess

import pytest

pytestmark = pytest.mark.fast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "build", "tests", "tas", "fp_cksum_check")


def test_fast_path_checksum_matches_dpdk():
    if not os.path.exists(CHECK):
        pytest.fail(f"{CHECK} missing: run `python deploy/native_build.py`")
    r = subprocess.run([CHECK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok ") and int(r.stdout.split()[1]) > 30000, r.stdout
