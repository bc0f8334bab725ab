"""Strata's payload checksum: the copy variants (AVX2 and SSE2 lines, plain
and streaming stores) and the fused checksum-and-flush of a referenced
extent (strata_csum_flush) give the same checksum for every length and
alignment, and the fused one flushes every byte of the extent once."""
import os
import subprocess

import pytest

pytestmark = pytest.mark.fast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "build", "tests", "strata", "strata_csum_check")


def test_checksum_variants_agree_and_flush_covers_the_extent():
    if not os.path.exists(CHECK):
        pytest.fail(f"{CHECK} missing: run `python deploy/native_build.py`")
    r = subprocess.run([CHECK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok ") and int(r.stdout.split()[1]) > 6000, r.stdout
