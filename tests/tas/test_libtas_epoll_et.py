"""libtas: edge-triggered epoll (EPOLLET) from an unmodified program, with
the expectations checked against Linux's epoll (the same client passes on
kernel sockets)."""
import sys

import pytest

from libtas_helpers import counters, finish, in_peer, tas_run

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

# Linux peer: sends 100 bytes, then 100 more after each byte it receives,
# and closes after the second.
PEER = """
import socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"a" * 100)
assert c.recv(1) == b"n"
c.sendall(b"b" * 100)
assert c.recv(1) == b"n"
c.close()
print("done", flush=True)
"""

# Under tas-run: one socket in an edge-triggered EPOLLOUT set, an
# edge-triggered EPOLLIN set and a level-triggered one.
CLIENT = """
import select, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.setblocking(False)
fd, IN, OUT = s.fileno(), select.EPOLLIN, select.EPOLLOUT
et_out = select.epoll()
et_out.register(s, OUT | select.EPOLLET)
assert et_out.poll(-1) == [(fd, OUT)]
assert et_out.poll(0) == []            # still writable, but nothing new
et = select.epoll()
et.register(s, IN | select.EPOLLET)
lt = select.epoll()
lt.register(s, IN)
assert et.poll(-1) == [(fd, IN)]
assert s.recv(10) == b"a" * 10
assert et.poll(0) == []                # the 90 bytes left are no news
assert lt.poll(0) == [(fd, IN)]        # level-triggered: still readable
s.send(b"n")                           # the peer sends 100 more
assert et.poll(-1) == [(fd, IN)]       # new data: a new edge
got = b""
while True:
    try:
        d = s.recv(1000)
    except BlockingIOError:
        break
    got += d
assert got == b"a" * 90 + b"b" * 100, got
assert et.poll(0) == []
et.modify(s, IN | select.EPOLLET)      # MOD re-arms: nothing is ready, no report
assert et.poll(0) == []
s.send(b"n")                           # the peer closes
assert et.poll(-1) == [(fd, IN)]       # its FIN
assert s.recv(10) == b""
print("ok")
"""


def test_epoll_edge_triggered(daemon, procs):
    peer = in_peer(procs, daemon, sys.executable, "-u", "-c", PEER, "7301")
    assert peer.stdout.readline().strip() == "listening", peer.stderr.read()
    before = counters(daemon).get("tcp_active_opens", 0)
    cli = tas_run(procs, daemon, sys.executable, "-c", CLIENT, "10.0.0.1", "7301")
    assert finish(cli, "EPOLLET client under libtas").strip() == "ok"
    assert finish(peer, "Linux peer").strip() == "done"
    assert counters(daemon)["tcp_active_opens"] == before + 1    # through TAS
