"""libtas: unmodified programs on TAS through the LD_PRELOAD socket shim.

Each test runs a real program (a plain-`socket` Python script, redis-server)
under tas-run against a real daemon, drives it from Linux in the peer
namespace, checks the bytes, and checks the daemon's TCP counters so that a
silent fallback to kernel sockets cannot pass.
"""
import json
import os
import subprocess
import sys

import pytest

from bindings import stats
from tasd import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Blocking echo server with nothing but the socket module.
ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
c, peer = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
    n += len(d)
c.close()
s.close()
print(n, flush=True)
"""

# Client: sends seeded bytes from a thread, reads the echo, reports digests.
ECHO_CLIENT = """
import hashlib, json, random, socket, sys, threading
ip, port, nbytes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(seed).randbytes(nbytes)
s = socket.create_connection((ip, port))
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = hashlib.sha256()
n = 0
while True:
    d = s.recv(65536)
    if not d:
        break
    got.update(d)
    n += len(d)
t.join()
s.close()
print(json.dumps({"bytes": n, "same": got.hexdigest() == hashlib.sha256(data).hexdigest()}))
"""

# Redis client in the peer namespace: SET/GET of seeded values, verified.
REDIS_CLIENT = """
import json, random, sys
import redis
r = redis.Redis(host="10.0.0.2", port=6379, socket_timeout=60)
rnd = random.Random(7)
sizes = [1, 100, 4096, 65536, 1 << 20]
for i, n in enumerate(sizes):
    v = rnd.randbytes(n)
    assert r.set(f"k{i}", v)
    assert r.get(f"k{i}") == v, f"value of {n} bytes came back different"
pipe = r.pipeline()
for i in range(1000):
    pipe.incr("counter")
assert pipe.execute()[-1] == 1000
print(json.dumps({"bytes": sum(sizes), "keys": r.dbsize()}))
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("needs root")
    d = Daemon(tmp_path_factory.mktemp("libtas")).start()
    try:
        yield d
    finally:
        d.stop()


def counters(d):
    return stats.read("tas", d.instance)


def tas_run(d, *cmd, stderr=subprocess.PIPE):
    """Start cmd under tas-run against daemon d."""
    return subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                             *cmd], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=stderr)


def in_peer(d, *cmd):
    return subprocess.Popen(["ip", "netns", "exec", d.netns, *cmd], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p, what):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"{what} failed ({p.returncode}): {err}"
    assert "libtas:" not in err, f"{what} fell back to kernel sockets: {err}"
    return out


def test_python_echo_server_on_tas(daemon):
    nbytes = 4 << 20
    before = counters(daemon)
    srv = tas_run(daemon, sys.executable, "-c", ECHO_SERVER, "7001")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    cli = in_peer(daemon, sys.executable, "-c", ECHO_CLIENT, "10.0.0.2", "7001", str(nbytes), "1")
    r = json.loads(finish(cli, "Linux client").strip().splitlines()[-1])
    assert finish(srv, "echo server under libtas").strip().splitlines()[-1] == str(nbytes)
    assert r == {"bytes": nbytes, "same": True}
    after = counters(daemon)
    assert after["tcp_rx_bytes"] - before["tcp_rx_bytes"] >= nbytes
    assert after["tcp_tx_bytes"] - before["tcp_tx_bytes"] >= nbytes


def test_python_client_on_tas(daemon):
    nbytes = 4 << 20
    before = counters(daemon)
    srv = in_peer(daemon, sys.executable, "-u", "-c", ECHO_SERVER, "7002")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    cli = tas_run(daemon, sys.executable, "-c", ECHO_CLIENT, "10.0.0.1", "7002", str(nbytes), "2")
    r = json.loads(finish(cli, "client under libtas").strip().splitlines()[-1])
    finish(srv, "Linux echo server")
    assert r == {"bytes": nbytes, "same": True}
    after = counters(daemon)
    assert after["tcp_rx_bytes"] - before["tcp_rx_bytes"] >= nbytes
    assert after["tcp_tx_bytes"] - before["tcp_tx_bytes"] >= nbytes


def test_redis_server_on_tas(daemon):
    before = counters(daemon)
    srv = tas_run(daemon, "redis-server", "--port", "6379", "--save", "", "--appendonly", "no",
                  "--protected-mode", "no", stderr=subprocess.STDOUT)
    try:
        log = []
        for line in srv.stdout:
            log.append(line)
            if "Ready to accept connections" in line:
                break
        assert "Ready to accept" in log[-1], "".join(log)
        ping = daemon.ns_run("redis-cli", "-h", "10.0.0.2", "PING", timeout=60)
        assert ping.stdout.strip() == "PONG", ping
        cli = in_peer(daemon, sys.executable, "-c", REDIS_CLIENT)
        r = json.loads(finish(cli, "redis client").strip().splitlines()[-1])
        assert r["keys"] == 6
        after = counters(daemon)
        assert after["tcp_rx_bytes"] - before["tcp_rx_bytes"] >= r["bytes"]
        assert after["tcp_tx_bytes"] - before["tcp_tx_bytes"] >= r["bytes"]
    finally:
        srv.terminate()
        out, _ = srv.communicate(timeout=60)
    assert "libtas:" not in "".join(log) + out, "redis-server fell back to kernel sockets"
