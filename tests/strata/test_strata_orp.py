"""ORP on the Strata side (docs/orp-contract.md): a program maps the pool's
ref area as a receive stack would, registers it with strata_nvm_map and
writes from it with unmodified write/pwrite/writev/pwritev2 under the shim.
Pieces of 16 KiB or more become WRITE_REF entries (checked in the pool file
itself), strata_ref_busy holds until digest, outstanding reference bytes
trigger a digest, and a referenced extent changed before recovery tears the
log -- which the ref_busy contract prevents."""
import json
import os
import subprocess
import sys

import pytest

from bindings import stats
from strata import api
from strata_helpers import BUILD, ROOT, fsck_clean, layout, log_entries, shim_env, strata_cli

ORPWRITER = os.path.join(BUILD, "strata_orpwriter")
MAPLEN = 1 << 20
PAT1 = bytes((i * 13 + 7) & 0xFF for i in range(MAPLEN))
PAT2 = bytes((i * 7 + 3) & 0xFF for i in range(MAPLEN))
# what orpwriter writes before its mode-specific part
FIRST = (b"H" * 100 + PAT1[:65536] + b"T" * 50 + PAT1[65536:98304] + PAT1[98304:118304]
         + PAT1[200000:201000] + PAT1[300000:308000])


def start(pool, mode, **env):
    off, length = api.pool_ref_area(pool)
    return subprocess.Popen([ORPWRITER, str(off), str(length), mode], env={**shim_env(pool), **env},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def line(proc):
    text = proc.stdout.readline()
    assert text, f"orpwriter exited with {proc.wait()}"
    return json.loads(text)


def check_first(out):
    assert (out["r_exdev"], out["e_exdev"]) == (-1, 18)  # another file: EXDEV
    assert (out["r_table"], out["e_table"]) == (-1, 22)  # the ownership table: EINVAL
    assert (out["r_beyond"], out["e_beyond"]) == (-1, 22)  # past the ref area: EINVAL
    assert out["r_map"] == 0 and (out["r_twice"], out["e_twice"]) == (-1, 22)
    assert out["w"] == [65686, 32768, 21000, 8000]
    assert (out["busy_ref"], out["busy_free"], out["busy_inline"]) == (1, 0, 0)


def cat(pool):
    return subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "cat", "/strata/orp.bin"],
                          capture_output=True, check=True, cwd=ROOT).stdout


@pytest.mark.parametrize("thread", ["1", "0"])
def test_writes_from_a_registered_map_are_references(pool, thread):
    """With the digest thread (the default) the reference trigger and
    strata_digest_kick digest in the background: the write returns with the
    references still busy and they go once the thread is done.  Without it
    the write that crosses the trigger digests, and the kick says -1."""
    w = start(pool, "digest", STRATA_DIGEST_THREAD=thread)
    try:
        check_first(line(w))
        c = stats.read("strata", str(w.pid))
        assert c["ref_writes"] == 3 and c["ref_bytes"] == 65536 + 32768 + 20000, c
        assert c["inline_bytes"] == 100 + 50 + 1000 + 8000, c
        # the 1000 B and 8000 B pieces lie in the map but are below STRATA_REF_MIN
        assert c["ref_fallbacks"] == 2 == c["ref_fallback_small"] and c["ref_fallback_nomem"] == 0, c
        assert c["ref_digests"] == 0, c
        w.stdin.write("go\n")
        w.stdin.flush()
        out = line(w)
        assert out["digested"] == 7 and out["busy_after"] == 0  # digest releases every byte
        # 128 KiB references pile up until the fifth passes half the mapped MiB
        assert out["busy_trigger"][:4] == [1, 1, 1, 1]
        assert out["released_trigger"] == 1 and out["busy_sixth"] == 1
        if thread == "0":
            assert out["busy_trigger"][4] == 0 and out["kick"] == -1 and out["released_kick"] == 0
        else:
            assert out["kick"] == 0 and out["released_kick"] == 1
        c = stats.read("strata", str(w.pid))
        # the trigger's digest, and the kick's where there is a thread
        assert c["ref_digests"] == (2 if thread == "1" else 1) and c["ref_writes"] == 9, c
        w.stdin.write("go\n")
        w.stdin.flush()
        assert w.wait(timeout=60) == 0
    finally:
        w.kill()
        w.wait()
        w.stdout.close()
        w.stdin.close()
    assert cat(pool) == FIRST + PAT2[:6 * 131072]
    fsck_clean(pool)


def test_undigested_references_are_recovered(pool):
    w = start(pool, "crash")
    check_first(line(w))
    assert w.wait(timeout=60) == 0
    w.stdout.close()
    w.stdin.close()
    # writev = one transaction of three entries; pwrite = one reference; the
    # pwritev2 = reference + inline (the 1000 B piece); write 8000 B inline
    assert log_entries(pool, w.pid) == [
        ("create", False), ("write", True), ("ref", True), ("write", False), ("ref", False),
        ("ref", True), ("write", False), ("write", False)]
    assert cat(pool) == FIRST  # recovery copies the extents from the ref area
    fsck_clean(pool)


def torn_discarded(pool):
    st = strata_cli("stat", pool=pool).stdout
    return [int(ln.split()[1].replace(",", "")) for ln in st.splitlines()
            if ln.split()[:1] == ["torn_entries_discarded"]][0]


def test_overwriting_a_referenced_extent_tears_the_log(pool):
    """The negative case: the writer overwrites the bytes its writev
    referenced before anything digested them, then dies.  Recovery finds the
    extent's checksum wrong and discards that transaction and every later
    entry of the log: acknowledged writes are lost."""
    w = start(pool, "overwrite")
    check_first(line(w))
    assert w.wait(timeout=60) == 0
    w.stdout.close()
    w.stdin.close()
    assert torn_discarded(pool) >= 1  # `strata stat` mounted: recovery ran and counted it
    assert cat(pool) == b""  # created (namespace ops apply at once), every write gone
    fsck_clean(pool)


def test_ref_busy_contract_prevents_the_tear(pool):
    """Same overwrite, but the writer asks strata_ref_busy first and digests
    when told the bytes are referenced: every write survives the crash."""
    w = start(pool, "respect")
    check_first(line(w))
    out = line(w)
    assert out == {"busy": 1, "digested": 7, "busy_after": 0}
    assert w.wait(timeout=60) == 0
    w.stdout.close()
    w.stdin.close()
    assert cat(pool) == FIRST
    fsck_clean(pool)


def test_pool_ref_area_and_layout_version(pool, pool_path):
    off, length = api.pool_ref_area(pool)
    st = strata_cli("stat", pool=pool).stdout
    assert all(f"\n  {k} " in st for k in ("ref_bytes", "inline_bytes", "ref_fallbacks", "ref_digests"))
    info = dict(ln.split(None, 1) for ln in st[:st.index("\nspace")].splitlines()[1:])  # the pool section
    assert (off, length) == (int(info["ref_off"]), int(info["ref_bytes"])) and length == (64 << 20) // 8
    ffi = layout()
    assert ffi.dlopen(None).STRATA_REF_TABLE == 4096 == int(info["ref_table"])
    big = pool_path + ".big"
    try:
        out = strata_cli("mkfs", "--size", "256M", "--ref-size", "96M", pool=big).stdout
        assert api.pool_ref_area(big)[1] == 96 << 20 and "ref area 100663296 bytes" in out
        bad = strata_cli("mkfs", "--size", "64M", "--ref-size", "5000", pool=big, check=False)
        assert bad.returncode != 0 and "--ref-size 5000 must be a multiple of 4096" in bad.stderr
        bad = strata_cli("mkfs", "--size", "64M", "--ref-size", "64M", pool=big, check=False)
        assert bad.returncode != 0 and "--size 64M is too small" in bad.stderr and "ref area of 64M" in bad.stderr
    finally:
        if os.path.exists(big):
            os.unlink(big)
    # version 3 holds every layout change: the sized ref area, the inode
    # owner/link fields with LINK entries (strata-posix, version 2) and the
    # triple-indirect block (version 3); any other is refused
    ffi_lib = ffi.dlopen(None)
    assert ffi_lib.STRATA_VERSION == 3 and ffi_lib.STRATA_E_LINK == 10
    assert ffi.offsetof("struct strata_inode", "nlink") + 4 + 4 == ffi.sizeof("struct strata_inode") == 128
    assert ffi.offsetof("struct strata_inode", "tind") == ffi.offsetof("struct strata_inode", "dind") + 4
    for other in (4, 2, 1):  # a later layout, and the earlier ones
        with open(pool, "r+b") as f:
            f.seek(8)
            f.write(other.to_bytes(4, "little"))
        r = strata_cli("stat", pool=pool, check=False)
        assert r.returncode != 0 and f"unsupported pool version {other}" in r.stderr, r.stderr
        assert "reads version 3 only" in r.stderr and "strata mkfs" in r.stderr
    try:
        api.pool_ref_area(pool)
        raise AssertionError("a version-1 pool has no v3 ref area")
    except api.StrataError as e:
        assert "unsupported pool version 1" in str(e)


def test_bad_ref_digest_setting_is_named(pool):
    off, length = api.pool_ref_area(pool)
    r = subprocess.run([ORPWRITER, str(off), str(length), "crash"], capture_output=True, text=True,
                       env=shim_env(pool, STRATA_REF_DIGEST_BYTES="12x"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "STRATA_REF_DIGEST_BYTES=12x: not a byte count" in r.stderr
    check_first(json.loads(r.stdout))  # and the default applies
