"""Unmodified Debian redis-server under `zio run`: values from 16 B to 4 MiB
stay correct through SET/GET/APPEND/GETRANGE and through an RDB restart."""
import os
import shutil
import socket
import subprocess
import time

import pytest
import redis

from bindings import stats
from zio_testlib import zio_start

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server not installed")

SIZES = [16, 1000, 4096, 16 * 1024, 65 * 1024 + 7, 256 * 1024, 1 << 20, 4 << 20]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(zio_env, workdir):
    port = free_port()
    proc = zio_start("run", "--", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(workdir),
                   "--dbfilename", "dump.rdb", env=zio_env,
                   stdout=open(workdir / "redis.log", "ab"), stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited: {(workdir / 'redis.log').read_text()}")
            time.sleep(0.05)
    pytest.fail("redis-server did not come up")


def stop(proc, client):
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    proc.wait(timeout=30)


def test_redis_values_and_restart(zio_env, tmp_path):
    proc, r = start_redis(zio_env, tmp_path)
    pid = r.info()["process_id"]
    try:
        expect = {}
        for i, size in enumerate(SIZES):
            key = f"k{i}"
            expect[key] = os.urandom(size)
            r.set(key, expect[key])
        for key, value in expect.items():
            assert r.get(key) == value
            tail = os.urandom(len(value) // 3 + 5)
            assert r.append(key, tail) == len(value) + len(tail)
            expect[key] = value + tail
        for key, value in expect.items():
            assert r.get(key) == value
            lo, hi = len(value) // 4, len(value) - len(value) // 5
            assert r.getrange(key, lo, hi) == value[lo:hi + 1]
        # overwrite some keys with new large values (reuse of buffers)
        for key in list(expect)[-3:]:
            expect[key] = os.urandom(len(expect[key]))
            r.set(key, expect[key])
        assert all(r.get(k) == v for k, v in expect.items())
        counters = stats.read("zio", str(pid))
        assert counters["copies_seen"] > 0 and counters["inputs_recorded"] > 0
        assert counters["uffd_errors"] == 0
        assert r.save()
        # a background save forks: libzio materialises everything first
        for key in list(expect)[:4]:
            expect[key] = os.urandom(len(expect[key]) + 1)
            r.set(key, expect[key])
        r.bgsave()
        for _ in range(600):
            persistence = r.info("persistence")
            if not persistence["rdb_bgsave_in_progress"]:
                break
            time.sleep(0.05)
        assert persistence["rdb_last_bgsave_status"] == "ok"
        assert stats.read("zio", str(pid))["fork_resolves"] >= 1
    finally:
        stop(proc, r)
    assert not os.path.exists(stats.page_path("zio", str(pid))), "stats page left behind"

    proc, r = start_redis(zio_env, tmp_path)
    try:
        assert r.dbsize() == len(expect)
        for key, value in expect.items():
            assert r.get(key) == value
    finally:
        stop(proc, r)
