"""libtas: non-blocking connect with Linux's semantics, from unmodified
programs (a plain-`socket` Python script, redis-benchmark) under tas-run
against Linux peers in the namespace."""
import sys

import pytest

from libtas_helpers import counters, finish, in_peer, tas_run
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace


def grown(before, after, key):
    return after.get(key, 0) - before.get(key, 0)

# Linux echo server: one thread per connection, runs until killed.
ECHO_FOREVER = """
import socket, sys, threading
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=16)
print("listening", flush=True)
def serve(c):
    with c:
        try:
            while (d := c.recv(65536)):
                c.sendall(d)
        except OSError:
            pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Every assertion states what Linux does (checked against the kernel).
NB_CONNECT = r"""
import errno, select, socket, sys
PEER, port, closed = "10.0.0.1", int(sys.argv[1]), int(sys.argv[2])
name = lambda rc: errno.errorcode.get(rc, rc)

def start(p, ip=PEER):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    rc = s.connect_ex((ip, p))
    assert name(rc) == "EINPROGRESS", name(rc)
    return s

def so_error(s):
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

def echo(s, msg):
    s.setblocking(True)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(len(msg) - len(got))
        assert d, "connection ended"
        got += d
    assert got == msg

def fails(call, exc):
    try:
        call()
    except exc:
        return True
    return False

# Pending: nobody answers ARP for .99, so the handshake cannot end meanwhile.
s = start(port, "10.0.0.99")
assert name(s.connect_ex(("10.0.0.99", port))) == "EALREADY"
p = select.poll()
p.register(s, select.POLLIN | select.POLLOUT)
assert p.poll(0) == []
assert so_error(s) == 0
assert fails(lambda: s.send(b"x"), BlockingIOError)
assert fails(s.getpeername, OSError)
s.close()

# Success, seen by select; connect reports it once, then EISCONN.
s = start(port)
_, w, _ = select.select([], [s], [], None)
assert w == [s]
assert so_error(s) == 0
assert s.connect_ex((PEER, port)) == 0
assert name(s.connect_ex((PEER, port))) == "EISCONN"
assert s.getpeername() == (PEER, port)
echo(s, b"select")
s.close()

# Success, seen by epoll (non-blocking set with fcntl this time).
s = socket.socket()
s.setblocking(False)
assert name(s.connect_ex((PEER, port))) == "EINPROGRESS"
ep = select.epoll()
ep.register(s, select.EPOLLOUT)
assert ep.poll(-1) == [(s.fileno(), select.EPOLLOUT)]
assert so_error(s) == 0
echo(s, b"epoll")
ep.close()
s.close()

# Refused, seen by poll: SO_ERROR reports it once; then connect says
# ECONNABORTED, and the next connect is a new attempt.
s = start(closed)
p = select.poll()
p.register(s, select.POLLOUT)
[(_, ev)] = p.poll(-1)
want = select.POLLOUT | select.POLLERR | select.POLLHUP
assert ev & want == want, hex(ev)
assert so_error(s) == errno.ECONNREFUSED
assert so_error(s) == 0
assert name(s.connect_ex((PEER, closed))) == "ECONNABORTED"
assert name(s.connect_ex((PEER, closed))) == "EINPROGRESS"
select.select([], [s], [], None)
assert name(s.connect_ex((PEER, closed))) == "ECONNREFUSED"
assert so_error(s) == 0
s.close()

# Refused, seen by epoll; send reports the error.
s = start(closed)
ep = select.epoll()
ep.register(s, select.EPOLLOUT)
assert ep.poll(-1) == [(s.fileno(), select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP)]
assert fails(lambda: s.send(b"x"), ConnectionRefusedError)
ep.close()
s.close()

# Blocking connects, and Python's connect with a timeout (non-blocking
# connect + poll + SO_ERROR inside the socket module).
assert fails(lambda: socket.create_connection((PEER, closed)), ConnectionRefusedError)
s = socket.create_connection((PEER, port))
echo(s, b"blocking")
s.close()
s = socket.create_connection((PEER, port), timeout=60)
echo(s, b"timeout")
s.close()

# Closed before the handshake ends: if the connection opens, it is reset.
start(port).close()
print("ok")
"""


def test_nonblocking_connect_like_linux(daemon, procs):
    srv = in_peer(procs, daemon, sys.executable, "-u", "-c", ECHO_FOREVER, "7101")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    before = counters(daemon)
    cli = tas_run(procs, daemon, sys.executable, "-c", NB_CONNECT, "7101", "7102")
    assert finish(cli, "non-blocking connect client").strip() == "ok"
    # (the fast path's connects reach the slow path's counts with its sweep)
    wait_until(lambda: grown(before, counters(daemon), "tcp_active_opens") >= 9,
               "the connects counted")
    after = counters(daemon)
    assert grown(before, after, "tcp_rst_received") >= 4   # refused
    # Every connection, including the one closed mid-handshake, goes away.
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0, "TAS connections to close")


def test_redis_benchmark_client_on_tas(daemon, procs):
    """redis-benchmark (hiredis: non-blocking connects, epoll) under the shim
    against redis-server in the peer namespace."""
    srv = in_peer(procs, daemon, "redis-server", "--port", "6391", "--save", "",
                  "--appendonly", "no", "--protected-mode", "no")
    for line in srv.stdout:
        if "Ready to accept connections" in line:
            break
    before = counters(daemon)
    cli = tas_run(procs, daemon, "redis-benchmark", "-h", "10.0.0.1", "-p", "6391",
                  "-c", "8", "-n", "4000", "-t", "set,get", "-d", "512", "-q")
    out = finish(cli, "redis-benchmark under libtas")
    assert "SET:" in out and "GET:" in out and "requests per second" in out, out
    info = daemon.ns_run("redis-cli", "-p", "6391", "INFO", "stats", timeout=60).stdout
    conns = int(next(ln for ln in info.splitlines()
                     if ln.startswith("total_connections_received:")).split(":")[1])
    assert conns >= 8, info
    after = counters(daemon)
    assert grown(before, after, "tcp_active_opens") >= 8
    assert grown(before, after, "tcp_tx_bytes") >= 4000 * 512 // 2
    srv.terminate()
    srv.communicate(timeout=60)
