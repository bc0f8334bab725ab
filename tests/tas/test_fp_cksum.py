"""The fast path's checksum (32-bit words into 64-bit sums, AVX2 where the
CPU has it) equals DPDK's rte_raw_cksum for every length and alignment."""
import pytest

from native_check import run_check

pytestmark = pytest.mark.fast


def test_fast_path_checksum_matches_dpdk():
    run_check("tas/fp_cksum_check", 30000)
