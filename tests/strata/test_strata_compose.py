"""Strata under libzio (`zio run -- strata run -- CMD`): libzio forwards a
tracked pwrite as pwritev, which libstrata must take itself (before it
defined pwritev the call reached glibc with the /dev/null placeholder fd and
the bytes were lost).  redis-server's BGREWRITEAOF failed with 'Illegal
seek': its rewrite child calls sync_file_range every 4 MiB
(aof-rewrite-incremental-fsync), which went to the placeholder too."""
import hashlib
import os
import random
import subprocess
import sys
import tempfile

from bindings import stats
from redis_helpers import free_port, kill9, redis_server_args, wait_ready, wait_rewrite
from strata_helpers import BUILD, ROOT, fsck_clean, shim_env, strata_cli

ZIO_PWRITE = os.path.join(BUILD, "strata_zio_pwrite")


def stack(pool, *cmd):
    """argv of CMD under zio run -- strata run."""
    return [sys.executable, "-m", "zio.cli", "run", "--", sys.executable, "-m", "strata.cli",
            "--pool", pool, "run", "--", *cmd]


def test_tracked_pwrite_is_stored(pool):
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as page:
        r = subprocess.run(stack(pool, ZIO_PWRITE, page.name), cwd=ROOT, env=shim_env(pool, LD_PRELOAD=""),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.split() == ["1048576", "200000"], r.stdout + r.stderr
        z = stats.read_page(page.name)
    assert z["copies_elided"] >= 1 and z["outputs_resolved"] == 2, z  # both pwrites were tracked
    pattern = bytes((i * 11 + 5) & 0xFF for i in range(1 << 20))
    got = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "cat", "/strata/p.bin"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    assert got == pattern + pattern[3 * 4096 + 100:3 * 4096 + 100 + 200000]
    fsck_clean(pool)


def start_redis(pool, port):
    proc = subprocess.Popen(
        stack(pool, *redis_server_args(port, "--auto-aof-rewrite-percentage", "0")),
        cwd=ROOT, env=shim_env(pool, LD_PRELOAD=""), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # generous: 256 KiB SETs with AOF always on 2 shared cores can take seconds
    return proc, wait_ready(proc, port, lambda: proc.stdout.read().decode(), tries=600,
                            socket_timeout=120)


def test_redis_bgrewriteaof_under_zio_and_strata(pool):
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/redis')"], env=shim_env(pool),
                   check=True)
    rnd = random.Random(11)
    values = {}
    port = free_port()
    proc, c = start_redis(pool, port)
    try:
        for i in range(60):  # large values: libzio elides the copies of them
            values[f"k{i}"] = rnd.randbytes(rnd.choice([1000, 65536, 262144]))
            c.set(f"k{i}", values[f"k{i}"])
        c.bgrewriteaof()  # the forked child writes the new base file
        assert wait_rewrite(c) == "ok", proc.stdout.read1().decode() if proc.poll() else ""
        for i in range(40, 90):
            values[f"k{i}"] = rnd.randbytes(rnd.choice([1000, 65536, 262144]))
            c.set(f"k{i}", values[f"k{i}"])
        assert c.info("persistence")["aof_last_write_status"] == "ok"
    finally:
        kill9(proc)
    fsck_clean(pool)
    aof = strata_cli("ls", "/strata/redis/appendonlydir", pool=pool).stdout
    assert "appendonly.aof.2.base.rdb" in aof, aof  # the rewrite produced a new base

    proc, c = start_redis(pool, port)
    try:
        assert c.dbsize() == len(values)
        for k, v in values.items():
            got = c.get(k)
            assert got is not None and hashlib.sha256(got).digest() == hashlib.sha256(v).digest(), k
    finally:
        kill9(proc)
    fsck_clean(pool)
