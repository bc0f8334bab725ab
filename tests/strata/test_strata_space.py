"""Capacity: a sparse pool that costs what is written, mkfs/df reporting,
ENOSPC as ENOSPC with nothing committed lost (pool full, and the pool's file
system full under a pool larger than it), and digest/unlink reclaiming space
so long append workloads keep running.  Each workload also runs on tmpfs."""
import json
import os
import subprocess
import sys
import uuid

import pytest

from strata import api
from strata_helpers import fsck_clean, shim_env, strata_cli

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "space_worker.py")
OLD_CAPACITY_MIB = 110  # data capacity of the old default (256M) pool


def work(pool, *args, strata_dir="/strata", **env):
    r = subprocess.run([sys.executable, WORKER, args[0], strata_dir, *map(str, args[1:])],
                       env=shim_env(pool, **env), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 48 MiB tmpfs: the reference for ENOSPC, and a file system smaller
    than a pool put on it."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_mkfs_default_pool_is_large_sparse_and_reported(pool_path):
    r = strata_cli("mkfs", pool=pool_path)
    assert "sparse, data capacity" in r.stdout
    st = os.stat(pool_path)
    assert st.st_size >= 1 << 30               # large ...
    assert st.st_blocks * 512 < 16 << 20        # ... and costs only its metadata
    df = strata_cli("df", pool=pool_path).stdout
    fields = {line.split()[0]: int(line.split()[-1]) for line in df.splitlines()}
    ref_bytes = api.pool_ref_area(pool_path)[1]  # the ORP ref area: an eighth (docs/orp-contract.md)
    assert ref_bytes == st.st_size // 8 and "ref area" in r.stdout
    assert fields["data_capacity_bytes"] > 0.95 * (st.st_size - ref_bytes)
    assert fields["data_used_bytes"] == 0 and fields["log_used_bytes"] == 0
    assert "space" in strata_cli("stat", pool=pool_path).stdout


def test_enospc_when_pool_is_full_matches_tmpfs(pool, small_tmpfs):
    got = work(pool, "fill")
    want = work(pool, "fill", strata_dir=small_tmpfs)
    assert got == want == {"chunks_positive": True, "error": "ENOSPC", "intact": True, "after_unlink": True}
    fsck_clean(pool)


def test_enospc_when_backing_file_system_is_full(small_tmpfs):
    """A 256M pool on a 48M tmpfs: the write that finds no room gets ENOSPC
    (never a SIGBUS on a store into a hole), and every earlier write stays."""
    pool = os.path.join(small_tmpfs, f"pool-{uuid.uuid4().hex[:6]}")
    strata_cli("mkfs", "--size", "256M", "--slots", "4", "--log-size", "1M", pool=pool)
    got = work(pool, "fill")
    assert got["error"] == "ENOSPC" and got["intact"] and got["after_unlink"], got
    fsck_clean(pool)


def test_long_append_past_four_times_the_old_capacity(pool_path, tmp_path):
    """One file appended to 4.4x the old default pool's data capacity, on the
    new default pool; the same bytes as on tmpfs, read back by a new process."""
    strata_cli("mkfs", pool=pool_path)
    mib = 4 * OLD_CAPACITY_MIB + 40
    got = work(pool_path, "append", mib)
    assert got == work(pool_path, "append", mib, strata_dir=str(tmp_path))
    assert got["size"] == mib << 20
    r = subprocess.run(["sha256sum", "/strata/aof"], env=shim_env(pool_path), capture_output=True,
                       text=True, check=True)
    assert r.stdout.split()[0] == got["sha256"]
    fsck_clean(pool_path)


def test_aof_rewrite_cycle_keeps_running_on_a_256M_pool(pool_path, tmp_path):
    """Appends totalling 4x the old capacity on the old 256M pool size, with
    periodic rewrites (compact copy renamed over the file): unlink and digest
    give the space back, so it never runs out."""
    strata_cli("mkfs", "--size", "256M", pool=pool_path)
    mib = 4 * OLD_CAPACITY_MIB
    got = work(pool_path, "rewrite", mib, 48)
    assert got == work(pool_path, "rewrite", mib, 48, strata_dir=str(tmp_path))
    assert got["appended_mib"] >= mib and got["rewrites"] >= 8
    df = {line.split()[0]: int(line.split()[-1]) for line in strata_cli("df", pool=pool_path).stdout.splitlines()}
    assert df["data_used_bytes"] < 64 << 20
    fsck_clean(pool_path)


def test_mkfs_prealloc_backs_the_whole_pool(pool_path):
    r = strata_cli("mkfs", "--size", "64M", "--slots", "4", "--log-size", "1M", "--prealloc", pool=pool_path)
    assert "64.0M preallocated" in r.stdout
    assert os.stat(pool_path).st_blocks * 512 == 64 << 20


def test_prealloc_pool_stays_backed_through_rewrites(pool_path, tmp_path):
    """A preallocated pool stands for an NVM device: blocks freed by rewrites
    and digest are reused without giving their pages back, so no later write
    pays the kernel's zeroing of a fresh page (a sparse pool punches them)."""
    strata_cli("mkfs", "--size", "64M", "--slots", "4", "--log-size", "1M", "--prealloc", pool=pool_path)
    got = work(pool_path, "rewrite", 96, 12)
    assert got == work(pool_path, "rewrite", 96, 12, strata_dir=str(tmp_path))
    assert got["rewrites"] >= 6
    assert os.stat(pool_path).st_blocks * 512 == 64 << 20
    fsck_clean(pool_path)


def tmpfs_mount(tmp_path, name, opts):
    mnt = tmp_path / name
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], check=True)
    return str(mnt)


@pytest.fixture
def huge_advise_tmpfs(tmp_path):
    """A tmpfs mounted as deploy/setup remounts /dev/shm: huge=advise."""
    mnt = tmpfs_mount(tmp_path, "huge", "size=512m,huge=advise")
    yield mnt
    subprocess.run(["umount", "-l", mnt], check=False)


@pytest.mark.root
def test_mkfs_says_which_pages_back_a_preallocated_pool(huge_advise_tmpfs, tmp_path):
    small = tmpfs_mount(tmp_path, "small-pages", "size=300m,huge=never")
    try:
        r = strata_cli("mkfs", "--size", "256M", "--prealloc", pool=f"{small}/p.pool")
        assert "fully backed in 4 KiB pages (a tmpfs mounted with huge=advise" in r.stdout
    finally:
        subprocess.run(["umount", "-l", small], check=False)
    r = strata_cli("mkfs", "--size", "256M", "--prealloc", pool=f"{huge_advise_tmpfs}/p.pool")
    assert "fully backed in 2 MiB pages;" in r.stdout


@pytest.mark.root
def test_prealloc_pool_is_mapped_in_huge_pages_and_a_sparse_one_is_not(huge_advise_tmpfs, tmp_path):
    """As a DAX device maps NVM: a preallocated pool on a huge=advise tmpfs
    gets 2 MiB pages (mkfs) and libstrata maps it so (digest's stores map
    2 MiB at a time); a sparse pool keeps 4 KiB pages (a huge page would back
    2 MiB for every block it touches)."""
    got = {}
    for kind in ("prealloc", "sparse"):
        pool = os.path.join(huge_advise_tmpfs, f"{kind}.pool")
        strata_cli("mkfs", "--size", "256M", *(["--prealloc"] if kind == "prealloc" else []),
                   pool=pool)
        got[kind] = work(pool, "append", 16, REPORT_PMD="1")
        pmd = got[kind].pop("pool_pmd_mapped_kb")
        ref = tmp_path / kind
        ref.mkdir()
        assert got[kind] == work(pool, "append", 16, strata_dir=str(ref))
        got[kind]["pool_pmd_mapped_kb"] = pmd
        fsck_clean(pool)
    assert got["prealloc"]["pool_pmd_mapped_kb"] >= 8 << 10    # most of the 16 MiB digested
    assert got["sparse"]["pool_pmd_mapped_kb"] == 0
    assert os.stat(os.path.join(huge_advise_tmpfs, "sparse.pool")).st_blocks * 512 < 128 << 20


def test_prealloc_pool_digest_maps_blocks_ahead(pool_path, tmp_path):
    """Digest into a fully backed pool maps the blocks it stores to in
    stretches (pages_populated), not one page fault per 4 KiB block."""
    strata_cli("mkfs", "--size", "256M", "--prealloc", pool=pool_path)
    got = work(pool_path, "append", 64)
    assert got["mapped_ahead"]
    assert got == work(pool_path, "append", 64, strata_dir=str(tmp_path))
    fsck_clean(pool_path)
