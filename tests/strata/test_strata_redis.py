"""Unmodified redis-server (AOF with appendfsync always, plus an RDB from
BGSAVE) keeps its files under /strata via the shim; after kill -9 and a
restart every acknowledged write is there and fsck is clean."""
import subprocess
import sys
import time

from redis_helpers import free_port, kill9, redis_server_args, wait_ready, wait_rewrite
from strata_helpers import ROOT, fsck_clean, shim_env, strata_cli


def start(pool, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--", *redis_server_args(port)],
        cwd=ROOT, env=shim_env(pool), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, wait_ready(proc, port, lambda: proc.stdout.read().decode())


def wait_bgsave(client):
    for _ in range(600):
        info = client.info("persistence")
        if not info["rdb_bgsave_in_progress"]:
            return info["rdb_last_bgsave_status"]
        time.sleep(0.05)
    return "timeout"


def test_redis_aof_and_rdb_survive_kill9(pool):
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/redis')"],
                   env=shim_env(pool), check=True)
    port = free_port()
    proc, c = start(pool, port)
    for i in range(300):
        c.set(f"k{i}", f"v{i}" * 20)
    c.incrby("counter", 7)
    c.bgsave()
    assert wait_bgsave(c) == "ok"
    for i in range(300, 500):  # after the RDB: only in the AOF
        c.set(f"k{i}", f"v{i}" * 20)
    c.rpush("list", *range(50))
    c.bgrewriteaof()  # child writes a new base file, parent renames it in
    assert wait_rewrite(c) == "ok"
    c.incrby("counter", 5)
    kill9(proc)

    fsck_clean(pool)
    listing = strata_cli("ls", "/strata/redis", pool=pool).stdout
    assert "dump.rdb" in listing and "appendonlydir" in listing, listing
    aof = strata_cli("ls", "/strata/redis/appendonlydir", pool=pool).stdout
    assert "appendonly.aof.2.base.rdb" in aof and "appendonly.aof.1.base.rdb" not in aof, aof

    proc, c = start(pool, port)
    try:
        assert c.dbsize() == 502
        assert all(c.get(f"k{i}") == (f"v{i}" * 20).encode() for i in range(500))
        assert c.get("counter") == b"12"
        assert c.lrange("list", 0, -1) == [str(i).encode() for i in range(50)]
    finally:
        kill9(proc)
    fsck_clean(pool)


def test_redis_aof_grows_past_four_times_the_old_capacity(pool_path):
    """The old default pool (256M) held about 110 MiB of AOF before redis
    exited with a short write.  On the default sparse pool an AOF of 4.4x
    that grows, a BGREWRITEAOF of it succeeds (its child syncs with
    sync_file_range every 4 MiB), and a restart loads every key."""
    strata_cli("mkfs", pool=pool_path)
    subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool_path, "run", "--", "mkdir", "-p",
                    "/strata/redis"], cwd=ROOT, env=shim_env(pool_path), check=True)
    port = free_port()
    proc, client = start(pool_path, port)
    value = b"v" * 8192
    keys = 60000  # 60000 x 8 KiB: about 470 MiB of AOF
    try:
        client.config_set("auto-aof-rewrite-percentage", 0)  # let the AOF grow
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            pipe.set(f"k{i}", value)
            if i % 500 == 499:
                pipe.execute()
        pipe.execute()
        info = client.info("persistence")
        assert info["aof_current_size"] > 4 * 110 * 2**20 and info["aof_last_write_status"] == "ok"
        client.bgrewriteaof()
        assert wait_rewrite(client) == "ok"
    finally:
        kill9(proc)
    proc, client = start(pool_path, port)
    try:
        assert client.dbsize() == keys and client.get("k123") == value
    finally:
        kill9(proc)
    fsck_clean(pool_path)
