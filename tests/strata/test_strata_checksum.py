"""Strata's payload checksum: the copy variants (AVX2 and SSE2 lines, plain
and streaming stores) and the fused checksum-and-flush of a referenced
extent (strata_csum_flush) give the same checksum for every length and
alignment, and the fused one flushes every byte of the extent once."""
import pytest

from native_check import run_check

pytestmark = pytest.mark.fast


def test_checksum_variants_agree_and_flush_covers_the_extent():
    run_check("strata/strata_csum_check", 6000)
