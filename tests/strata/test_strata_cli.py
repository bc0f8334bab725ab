"""The `strata` CLI, digest coalescing, and bad input: corrupted superblocks
and log entries are reported, never followed."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

from strata_helpers import API_WORKER, ROOT, api, fsck_clean, layout, shim_env, strata_cli


def test_cli_roundtrip(pool, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(100_000))
    strata_cli("cp", str(src), "/strata/in.bin", pool=pool)
    assert "in.bin" in strata_cli("ls", pool=pool).stdout
    cat = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "cat", "/strata/in.bin"],
                         capture_output=True, check=True, cwd=ROOT)
    assert cat.stdout == src.read_bytes()
    strata_cli("cp", "/strata/in.bin", str(tmp_path / "out.bin"), pool=pool)
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert "digested" in strata_cli("digest", pool=pool).stdout
    st = strata_cli("stat", pool=pool).stdout
    assert "is_pmem      0" in st and "no (emulated)" in st and "log_appends" in st
    fsck_clean(pool)


def test_digest_coalesces_overwrites(pool):
    # the writer digests itself: a background pass would split the batches
    counters = api(pool, "overwrite", env=dict(os.environ, STRATA_DIGEST_THREAD="0"))
    # 100 overwrites of one block; the 1 MiB log passes its 30% threshold once,
    # so two batches, each keeping only its last write of the block
    assert counters["digested_entries"] == 100 and counters["digests"] == 2, counters
    assert counters["coalesced_overwrites"] == 98, counters
    data = bytes.fromhex(api(pool, "read", "/hot")["hex"])
    assert len(data) == 8192 + 4096 and data[8192:] == bytes([99]) * 4096


def corrupt(pool, offset, value):
    with open(pool, "r+b") as f:
        f.seek(offset)
        f.write(value)


def test_corrupted_superblock_is_reported(pool):
    corrupt(pool, 40, b"\xff")  # inside the checksummed static part
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode != 0 and "checksum mismatch" in r.stderr
    shim = subprocess.run([sys.executable, "-c", "import os; os.open('/strata/x', os.O_RDONLY)"],
                          env=shim_env(pool), capture_output=True, text=True)
    assert shim.returncode != 0 and f"[Errno {errno.EUCLEAN}]" in shim.stderr


def test_bad_magic_and_version_are_reported(pool):
    corrupt(pool, 8, (99).to_bytes(4, "little"))
    r = strata_cli("stat", pool=pool, check=False)
    assert r.returncode != 0 and "unsupported pool version" in r.stderr
    corrupt(pool, 0, b"NOTSTRAT")
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode != 0 and "bad superblock magic" in r.stderr


def test_corrupted_log_entry_is_discarded_with_its_tail(pool):
    api(pool, "ref", "crash")  # logs head, ref, tail undigested, then dies
    with open(pool, "rb") as f:
        data = f.read()
    at = data.index(b"head")  # payload of the first write entry
    corrupt(pool, at, b"HEAD")
    st = strata_cli("stat", pool=pool).stdout  # mounting recovers (and counts)
    torn = [int(ln.split()[1].replace(",", "")) for ln in st.splitlines()
            if ln.split()[:1] == ["torn_entries_discarded"]]
    assert torn and torn[0] >= 1, st
    assert bytes.fromhex(api(pool, "read", "/ref.bin")["hex"]) == b""  # created, no data
    fsck_clean(pool)


def slot_owners(pool):
    """Owner pids of the pool's log slots, read from the file (no mount)."""
    ffi = layout()
    with open(pool, "rb") as f:
        data = f.read(1 << 20)
    sb = ffi.from_buffer("struct strata_super *", data)
    slots = ffi.cast("struct strata_slot *", ffi.from_buffer(data) + sb.off_slots)
    return [slots[i].owner_pid for i in range(sb.nslots)]


def test_kernfs_service_recovers_dead_logs(pool):
    svc = subprocess.Popen([sys.executable, "-m", "strata.cli", "--pool", pool, "kernfs",
                            "--interval", "0.05"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert "digesting" in svc.stdout.readline()
        child = subprocess.Popen([sys.executable, API_WORKER, pool, "ref", "crash"],
                                 stdout=subprocess.PIPE, text=True)
        assert json.loads(child.communicate(timeout=60)[0])["ref"] == 4096  # died undigested
        for _ in range(600):  # the service, not a mount, must take the dead slot back
            if child.pid not in slot_owners(pool):
                break
            time.sleep(0.05)
        assert child.pid not in slot_owners(pool)
    finally:
        svc.send_signal(signal.SIGTERM)
        svc.wait(timeout=30)
        svc.stdout.close()
    assert api(pool, "read", "/ref.bin")["len"] == 4 + 4096 + 4
    fsck_clean(pool)


def test_coreutils_through_the_shim(pool):
    script = ("mkdir /strata/cu && echo hello > /strata/cu/a && cp /etc/services /strata/cu/s && "
              "cmp /etc/services /strata/cu/s && mv /strata/cu/a /strata/cu/b && "
              "cat /strata/cu/b && rm /strata/cu/s && ls -la /strata/cu")
    r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--", "sh", "-c",
                        script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hello"
    assert [ln.split()[-1] for ln in lines[2:]] == [".", "..", "b"]
    assert not os.path.exists("/strata/cu")  # nothing reached the kernel's namespace
    fsck_clean(pool)


def test_pool_on_a_disk_file_persists_with_msync(tmp_path):
    pool = str(tmp_path / "disk.pool")  # not tmpfs: libpmem requires pmem_msync
    strata_cli("mkfs", "--size", "32M", "--slots", "2", "--log-size", "1M", "--inodes", "64", pool=pool)
    src = tmp_path / "x"
    src.write_bytes(b"data" * 1000)
    strata_cli("cp", str(src), "/strata/x", pool=pool)
    assert "persist      pmem_msync" in strata_cli("stat", pool=pool).stdout
    strata_cli("cp", "/strata/x", str(tmp_path / "y"), pool=pool)
    assert (tmp_path / "y").read_bytes() == src.read_bytes()
    fsck_clean(pool)


def test_python_kernel_copy_paths_fall_back(pool, tmp_path):
    """shutil.copyfile tries sendfile/copy_file_range; on a Strata fd those must
    fail so Python copies with read/write instead of into the reserved fd."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    code = (f"import os, shutil; shutil.copyfile({str(src)!r}, '/strata/c.bin'); "
            f"shutil.copyfile('/strata/c.bin', {str(tmp_path / 'back.bin')!r}); "
            "fd = os.open('/strata/f', os.O_RDWR | os.O_CREAT); os.posix_fallocate(fd, 0, 12345); "
            "print(os.fstat(fd).st_size)")
    r = subprocess.run([sys.executable, "-c", code], env=shim_env(pool), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "12345"
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    fsck_clean(pool)


def test_corrupted_block_pointer_is_reported_not_followed(pool, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"z" * 10000)
    strata_cli("cp", str(src), "/strata/f", pool=pool)  # digested when cp closes it
    ino = int(subprocess.run([sys.executable, "-c", "import os; print(os.stat('/strata/f').st_ino)"],
                             env=shim_env(pool), capture_output=True, text=True,
                             check=True).stdout)
    ffi = layout()
    with open(pool, "r+b") as f:
        sb = ffi.from_buffer("struct strata_super *", bytearray(f.read(4096)))
        at = sb.off_inodes + ino * ffi.sizeof("struct strata_inode") + ffi.offsetof(
            "struct strata_inode", "direct")
        f.seek(at + 4)  # direct[1]
        f.write((0xFFFFFF00).to_bytes(4, "little"))  # far outside the pool
    r = subprocess.run([sys.executable, "-c", "open('/strata/f', 'rb').read()"],
                       env=shim_env(pool), capture_output=True, text=True)
    assert r.returncode != 0 and f"[Errno {errno.EUCLEAN}]" in r.stderr, r.stderr
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode == 1 and "outside the data area" in r.stdout, r.stdout


def test_run_refuses_a_pool_it_cannot_attach(tmp_path):
    """`strata run` with a missing pool, or a file that is not a pool, says
    why and does not start the program.  It used to start it: each process
    printed "cannot map" and ran on, /strata paths failing and relative
    paths, after a failed cd into /strata, landing where it started."""
    marker = tmp_path / "ran"
    notpool = tmp_path / "notpool"
    notpool.write_bytes(bytes(65536))
    for pool, why in ((str(tmp_path / "missing.pool"), "No such file or directory"),
                      (str(notpool), "not a Strata pool")):
        r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--",
                            "touch", str(marker)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and why in r.stderr, (r.returncode, r.stderr)
        assert not marker.exists()
        # kbrun with its Strata layer likewise
        r = subprocess.run([sys.executable, "-m", "kb.run", "--no-tas", "--pool", pool, "--",
                            "touch", str(marker)], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and why in r.stderr and "kbrun" in r.stderr, (r.returncode, r.stderr)
        assert not marker.exists()
