"""Redis with AOF `always` on the whole stack (libzio:libtas:libstrata), with
and without optimistic receiver persistence: every SET the client saw
acknowledged survives a SIGKILL of redis-server, of the TAS daemon, or both,
including across a BGREWRITEAOF in the middle of the run."""
import pytest

from bindings import stats
from tasd import wait_until

from orp_stack import (acked, kill, reload_and_check, run_client, start_daemon,
                       start_redis_on_stack, wait_acked)

NKEYS = 40


def info(d, port):
    return d.ns_run("redis-cli", "-h", "10.0.0.2", "-p", str(port), "INFO", "persistence",
                    timeout=60).stdout


@pytest.mark.parametrize("orp", [False, True], ids=["shm", "orp"])
@pytest.mark.parametrize("victim", ["redis", "daemon", "both"])
def test_acknowledged_sets_survive_sigkill(make_daemon, procs, orp_pool, tmp_path, orp, victim):
    d = start_daemon(make_daemon, orp_pool, orp)
    srv = start_redis_on_stack(procs, d, orp_pool, orp)
    log = tmp_path / "acked.txt"
    client = run_client(procs, d, srv.port, log, NKEYS, seed=hash(victim) & 0xffff, rewrite_at=8)
    wait_acked(log, 16, client)
    if victim in ("redis", "both"):
        kill(srv)
    if victim in ("daemon", "both"):
        kill(d.proc)
    kill(client)   # it may wait on a dead server; what it logged is what was acknowledged
    kill(srv)
    d.stop()
    expected = acked(log)
    assert len(expected) >= 16
    missing, wrong = reload_and_check(procs, orp_pool, expected)
    assert not missing and not wrong, f"lost {missing}, changed {wrong}"


@pytest.mark.parametrize("orp", [False, True], ids=["shm", "orp"])
def test_full_run_with_rewrite_reloads(make_daemon, procs, orp_pool, tmp_path, orp):
    d = start_daemon(make_daemon, orp_pool, orp)
    srv = start_redis_on_stack(procs, d, orp_pool, orp)
    maps = open(f"/proc/{srv.pid}/maps").read()
    for lib in ("libzio.so", "libtas.so", "libstrata.so"):
        assert lib in maps, f"{lib} is not loaded in redis-server"
    before = stats.read("tas", d.instance)["tcp_rx_bytes"]
    log = tmp_path / "acked.txt"
    client = run_client(procs, d, srv.port, log, 24, seed=7, rewrite_at=12)
    out, err = client.communicate(timeout=600)
    assert client.returncode == 0 and "stopped" not in err, err
    wait_until(lambda: "aof_rewrite_in_progress:0" in info(d, srv.port), "the AOF rewrite to finish")
    assert "aof_last_bgrewrite_status:ok" in info(d, srv.port), info(d, srv.port)
    # the values came through TAS, not a kernel-socket fallback
    assert stats.read("tas", d.instance)["tcp_rx_bytes"] - before >= 24 * (64 << 10)
    srv.terminate()
    srv.wait(timeout=60)
    d.stop()
    expected = acked(log)
    assert len(expected) == 24
    missing, wrong = reload_and_check(procs, orp_pool, expected)
    assert not missing and not wrong, f"lost {missing}, changed {wrong}"
