"""connect() in the fast path (include/tas/synfast.h, tas/fastpath/fp_tcp_connect.c):
an unmodified Python client under tas-run against Linux servers in the
daemon's peer namespace.  The app's first connect goes the slow way and
gives it a connector; the later ones are opened and completed by the fast
path, with the bytes of every connection intact.  What the fast path does
not complete is the slow path's and ends as on Linux: a refused connect
(ECONNREFUSED), a connect whose SYNs are dropped (the slow path resends the
SYN, then ETIMEDOUT).  With tcp.time_wait_reuse a connect takes a port
pair in TIME_WAIT (tcp_tw_reuse), so a 4-port range serves more
connections than it has ports inside tcp.time_wait_ms."""
import json
import subprocess
import sys

import pytest

from libtas_helpers import counters, finish, in_peer, syn_counters, tas_run
from tasd import Daemon, wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

PORTS = "40000-40003"

# Linux echo server: one thread per connection, runs until killed.
ECHO_FOREVER = """
import socket, sys, threading
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
print("listening", flush=True)
def serve(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# n connections one after the other, each echoing seeded bytes; a pause
# between them lets a port pair's TIME_WAIT age past a second (reuse).
CONNECTS = r"""
import hashlib, json, random, socket, sys, time
port, n, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rnd, same, ports = random.Random(5), 0, set()
for i in range(n):
    msg = rnd.randbytes(rnd.choice([1, 1000, 65536, 300000]))
    s = socket.create_connection(("10.0.0.1", port))
    ports.add(s.getsockname()[1])
    s.sendall(msg)
    got = bytearray()
    while len(got) < len(msg):
        d = s.recv(1 << 20)
        assert d, "connection ended early"
        got += d
    same += hashlib.sha256(got).digest() == hashlib.sha256(msg).digest()
    s.close()
    time.sleep(pause)
print(json.dumps({"same": same, "ports": sorted(ports)}))
"""

FAILS = r"""
import errno, socket, sys
port, dropped, closed = (int(a) for a in sys.argv[1:4])
s = socket.create_connection(("10.0.0.1", port))      # (the connector)
s.close()
for p, exc in ((closed, ConnectionRefusedError), (dropped, TimeoutError)):
    try:
        socket.create_connection(("10.0.0.1", p)).close()
        raise SystemExit(f"connect to {p} did not fail")
    except exc:
        pass
print("ok")
"""

DROP_SYNS = """
table inet connect_drop {{
    chain input {{
        type filter hook input priority 0;
        tcp dport {port} drop
    }}
}}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # Four ports, TIME_WAIT for a minute: without reuse the fifth connect
    # within a minute has no port.  A short handshake so a dropped SYN
    # times out in well under a second.
    d = Daemon(tmp_path_factory.mktemp("tas"),
               extra=f'[tcp]\nephemeral_ports = "{PORTS}"\ntime_wait_ms = 60000\n'
                     "time_wait_reuse = true\nhandshake_timeout_ms = 20\n"
                     "handshake_retries = 3\n").start()
    try:
        yield d
    finally:
        d.stop()


def grown(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def test_connects_open_in_the_fast_path_and_reuse_time_wait_pairs(daemon, procs):
    n = 10
    srv = in_peer(procs, daemon, sys.executable, "-u", "-c", ECHO_FOREVER, "7401")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    s0, c0 = syn_counters(daemon), counters(daemon)
    cli = tas_run(procs, daemon, sys.executable, "-c", CONNECTS, "7401", str(n), "0.7")
    r = json.loads(finish(cli, "client under tas-run").strip().splitlines()[-1])
    assert r["same"] == n
    assert set(r["ports"]) <= set(range(40000, 40004))
    s1 = syn_counters(daemon)
    # the first connect made the connector, the fast path opened the others
    assert grown(s0, s1, "conn_fallback_no_connector") == 1
    assert grown(s0, s1, "conn_fast") == n - 1
    # ten connections on four ports, each left in TIME_WAIT for a minute
    wait_until(lambda: grown(c0, counters(daemon), "tcp_time_wait_reused") >= n - 4,
               "the TIME_WAIT pairs the connects reused counted")
    wait_until(lambda: grown(c0, counters(daemon), "tcp_active_opens") == n,
               "every connect counted once")
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0, "the connections to close")


def test_refused_and_dropped_connects_fail_as_on_linux(daemon, procs):
    srv = in_peer(procs, daemon, sys.executable, "-u", "-c", ECHO_FOREVER, "7402")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    subprocess.run(["ip", "netns", "exec", daemon.netns, "nft", "-f", "-"],
                   input=DROP_SYNS.format(port=7403), text=True, check=True)
    try:
        s0, c0 = syn_counters(daemon), counters(daemon)
        cli = tas_run(procs, daemon, sys.executable, "-c", FAILS, "7402", "7403", "7404")
        assert finish(cli, "client under tas-run").strip() == "ok"
        s1, c1 = syn_counters(daemon), counters(daemon)
    finally:
        subprocess.run(["ip", "netns", "exec", daemon.netns, "nft", "delete", "table", "inet",
                        "connect_drop"], check=True)
    assert grown(s0, s1, "conn_fast") >= 2           # both failing ones went fast
    assert grown(c0, c1, "tcp_rst_received") >= 1     # refused
    assert grown(c0, c1, "tcp_handshake_timeouts") == 1
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0, "the connections to go")
