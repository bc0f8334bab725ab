"""Unmodified redis-server under `zio run -- strata run` (libzio before
libstrata), AOF `always` on /strata with values large enough for libzio to
track: BGREWRITEAOF succeeds and every acknowledged value is there after a
restart under libstrata alone (the issue's composition regression).  The
fork for the rewrite used to hang now and then: libzio's fork-prepare
handler held its lock across jemalloc's, whose background thread was
waiting for that lock inside the interposed madvise."""
import os
import shutil
import subprocess
import sys
import time

import pytest
import redis

from bindings import stats
from redis_helpers import free_port, redis_server_args, wait_ready
from zio_testlib import ROOT

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server not installed")


def start(cmd, env, log):
    port = free_port()
    proc = subprocess.Popen(cmd + redis_server_args(port), cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return proc, wait_ready(proc, port, lambda: open(log).read(), socket_timeout=120)


def stop(proc, client):
    """Shut down saving the AOF; a server that does not go is killed (and
    the test fails) rather than left running."""
    try:
        client.shutdown()
    except redis.RedisError:
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def rewrite_status(client):
    """The last BGREWRITEAOF's status once none is running or scheduled."""
    info = client.info("persistence")
    polls = 0
    while (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]) and polls < 1200:
        time.sleep(0.05)
        polls += 1
        info = client.info("persistence")
    return info["aof_last_bgrewrite_status"] if polls < 1200 else "timeout"


def test_bgrewriteaof_under_zio_and_strata(strata_pool, libzio, tmp_path):
    env = dict(os.environ, STRATA_POOL=strata_pool, STRATA_MOUNT="/strata", PYTHONPATH=ROOT,
               ZIO_LIB=libzio)
    libstrata = os.path.join(ROOT, "strata", "libstrata.so")
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/redis')"],
                   env=dict(env, LD_PRELOAD=libstrata), check=True, timeout=60)
    strata_run = [sys.executable, "-m", "strata.cli", "--pool", strata_pool, "run", "--"]
    zio_run = [sys.executable, "-m", "zio.cli", "run", "--"]
    log = tmp_path / "redis.log"
    proc, c = start(zio_run + strata_run, env, log)
    expect = {}
    try:
        pid = c.info()["process_id"]
        # several forks: the hang needed jemalloc's purge thread inside madvise
        # at the moment of the fork (before the fix, about 1 fork in 10)
        for rnd in range(6):
            for i in range(12):
                expect[f"k{i}"] = os.urandom(200 * 1024 + i + rnd)
                c.set(f"k{i}", expect[f"k{i}"])
            assert c.bgrewriteaof()
            assert rewrite_status(c) == "ok", log.read_text()
        for i in range(12, 20):   # after the rewrite: in the new incremental file
            expect[f"k{i}"] = os.urandom(300 * 1024 + i)
            c.set(f"k{i}", expect[f"k{i}"])
        assert all(c.get(k) == v for k, v in expect.items())
        counters = stats.read("zio", str(pid))
        assert counters["inputs_recorded"] > 0 and counters["uffd_errors"] == 0
        # AOF writes of elided copies went to libstrata as writev of the
        # originals; replies to the kernel socket as sendmsg (libstrata
        # interposes write but owns no socket, so that rewrite is allowed)
        assert counters["outputs_resolved"] > 0 and counters["outputs_materialized"] == 0
    finally:
        stop(proc, c)
    proc, c = start(strata_run, env, log)
    try:
        assert c.dbsize() == len(expect)
        assert all(c.get(k) == v for k, v in expect.items())
    finally:
        stop(proc, c)
