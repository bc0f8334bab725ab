"""What TAS does not carry stays on the kernel's stack, as without the shim.

TAS carries the daemon's subnet only (no router, no loopback).  Before,
a program under tas-run that connected to 127.0.0.1 waited for a handshake
TAS could never make, and a server listening on 0.0.0.0 could not be
reached from its own host (redis-cli, curl localhost, health checks).  Now:
- connect() to an address outside TAS's subnet moves the socket to the
  kernel (options set before it are replayed);
- bind() to such an address makes a kernel socket;
- a listener on a wildcard address also gets a kernel twin on the same
  port, whose connections accept() returns as kernel sockets, with
  readiness through epoll, poll/select and a blocking accept.
Real daemon, Python programs under tas-run, the Linux kernel as the peer.
"""
import json
import socket
import sys

import pytest

from libtas_helpers import finish, in_peer, tas_run

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

# Serves one connection from the peer (through TAS) and one from this host
# (through the kernel twin), in either order, waiting as argv[2] says.
SERVER = """
import json, os, select, selectors, socket, sys
from bindings import stats
port, wait = int(sys.argv[1]), sys.argv[2]
s = socket.create_server(("0.0.0.0", port))
if wait != "blocking":
    s.setblocking(False)
sel = selectors.EpollSelector()
sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
peers = []
while len(peers) < 2:
    if wait == "epoll":
        sel.select()
    elif wait == "select":
        select.select([s], [], [])
    elif wait == "poll":
        p = select.poll()
        p.register(s, select.POLLIN)
        p.poll()
    try:
        c, addr = s.accept()
    except BlockingIOError:
        continue
    c.setblocking(True)
    c.sendall(c.recv(100).upper())
    c.close()
    peers.append(addr[0])
got = stats.read("libtas", str(os.getpid()))
print(json.dumps({"peers": sorted(peers), "twins": got.get("listeners_kernel_twin"),
                  "kernel_accepts": got.get("accepts_from_kernel")}), flush=True)
"""

PEER_CLIENT = """
import socket, sys
c = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=60)
c.sendall(b"from the peer")
print(c.recv(100).decode(), flush=True)
"""


def ask(port, text):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(text)
        return c.recv(100)


@pytest.mark.parametrize("wait", ["epoll", "select", "poll", "blocking"])
def test_a_wildcard_listener_is_reached_from_its_host_and_through_tas(daemon, procs, wait):
    port = 7020
    srv = tas_run(procs, daemon, sys.executable, "-u", "-c", SERVER, str(port), wait)
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    assert ask(port, b"from this host") == b"FROM THIS HOST"          # the kernel twin
    cli = in_peer(procs, daemon, sys.executable, "-c", PEER_CLIENT, str(port))
    assert finish(cli, "Linux client in the peer namespace").strip() == "FROM THE PEER"
    out = json.loads(finish(srv, "server under libtas").strip().splitlines()[-1])
    assert out == {"peers": ["10.0.0.1", "127.0.0.1"], "twins": 1, "kernel_accepts": 1}


# Connects to a kernel server on this host, with options set before connect.
LOCAL_CLIENT = """
import json, os, socket, sys
from bindings import stats
c = socket.socket()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.settimeout(60)
c.connect(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"ping")
reply = c.recv(100).decode()
out = {"reply": reply,
       "nodelay": c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
       "keepalive": c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
       "fd_is_kernel_socket": os.readlink(f"/proc/self/fd/{c.fileno()}").startswith("socket:"),
       "moved": stats.read("libtas", str(os.getpid())).get("sockets_to_kernel")}
print(json.dumps(out), flush=True)
"""


def run_against_a_host_server(daemon, procs, client):
    """Runs client (argv[1]: the port) under tas-run against a kernel server
    on 127.0.0.1 here that answers one message in capitals; its output."""
    with socket.create_server(("127.0.0.1", 0)) as ls:
        cli = tas_run(procs, daemon, sys.executable, "-c", client, str(ls.getsockname()[1]))
        c, _ = ls.accept()
        with c:
            c.sendall(c.recv(100).upper())
        return finish(cli, "client under libtas").strip()


def test_a_client_reaches_its_host_through_the_kernel(daemon, procs):
    out = json.loads(run_against_a_host_server(daemon, procs, LOCAL_CLIENT).splitlines()[-1])
    assert out == {"reply": "PING", "nodelay": 1, "keepalive": 1, "fd_is_kernel_socket": True,
                   "moved": 1}


# Binds 127.0.0.1 explicitly: a kernel socket from the start.
LOOPBACK_SERVER = """
import socket, sys
s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
"""


def test_a_server_bound_to_loopback_is_a_kernel_one(daemon, procs):
    port = 7021
    srv = tas_run(procs, daemon, sys.executable, "-u", "-c", LOOPBACK_SERVER, str(port))
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    assert ask(port, b"loopback") == b"LOOPBACK"
    finish(srv, "loopback server under libtas")


# Another app on the same daemon, by the daemon's address: TAS has no
# hairpin, so libtas connects through loopback to the listener's kernel twin.
OWN_ADDRESS_CLIENT = """
import socket, sys
c = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=60)
c.sendall(b"neighbour")
print(c.recv(100).decode(), flush=True)
"""


def test_an_app_reaches_another_on_the_same_daemon_by_its_address(daemon, procs):
    port = 7022
    srv = tas_run(procs, daemon, sys.executable, "-u", "-c", LOOPBACK_SERVER.replace(
        '"127.0.0.1"', '"0.0.0.0"'), str(port))
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    cli = tas_run(procs, daemon, sys.executable, "-c", OWN_ADDRESS_CLIENT, str(port))
    assert finish(cli, "client under libtas").strip() == "NEIGHBOUR"
    finish(srv, "server under libtas")


# Added to epoll before its connect (some event loops do): the socket that
# moves to the kernel keeps its registration, moved to the kernel's set.
EPOLL_FIRST_CLIENT = """
import select, socket, sys
c = socket.socket()
c.setblocking(False)
ep = select.epoll()
ep.register(c.fileno(), select.EPOLLOUT)
try:
    c.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
events = ep.poll(60)
assert events == [(c.fileno(), select.EPOLLOUT)], events
assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
c.setblocking(True)
c.sendall(b"registered first")
print(c.recv(100).decode(), flush=True)
"""


def test_an_epoll_registration_made_before_connect_moves_with_the_socket(daemon, procs):
    assert run_against_a_host_server(daemon, procs, EPOLL_FIRST_CLIENT) == "REGISTERED FIRST"
