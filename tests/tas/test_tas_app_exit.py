"""A server's connections when it closes them, exits or is killed, as Linux
would end them: FIN when nothing it received was left unread, RST when
unread data is thrown away (or data comes after the close).  Afterwards
`tasctl flows` lists none of its connections once the close handshake is
done, TIME_WAIT pairs show as such and expire, and the next server on the
same port gets its connections.  Real daemon, real iperf3, and the Linux
kernel as the peer in the daemon's namespace."""
import json
import os
import signal
import subprocess
import sys

import pytest

from libtas_helpers import counters, finish, in_peer, tas_run
from tasd import Daemon, wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The module's daemon, TIME_WAIT long enough (6 s) that a loaded
    machine's slow tasctl still sees it before it expires."""
    d = Daemon(tmp_path_factory.mktemp("tas"), extra="[tcp]\ntime_wait_ms = 6000").start()
    try:
        yield d
    finally:
        d.stop()

# Under tas-run: accept one connection; "ping": read the client's 4 bytes and
# answer "pong" (nothing left unread); "unread": read 10 of the client's
# 1000 bytes (all of them there, one segment) and leave the rest.  Then
# `how`: close the socket and stay, os._exit with it open, or wait (the test
# kills it).  Without "reuse", no SO_REUSEADDR; a refused listen is printed.
SERVER = """
import os, socket, sys
port, what, how, reuse = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "reuse"
s = socket.socket()
if reuse:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
try:
    s.listen(8)
except OSError as e:
    print("listen failed", e.errno, flush=True)
    sys.exit(0)
print("listening", flush=True)
c, _ = s.accept()
if what == "ping":
    got = b""
    while len(got) < 4:
        got += c.recv(4 - len(got))
    c.sendall(b"pong")
else:
    c.recv(10)
print("served", flush=True)
if how == "close":
    c.close()
    print("closed", flush=True)
    sys.stdin.readline()
elif how == "_exit":
    os._exit(0)
else:
    sys.stdin.readline()
"""

# In the peer namespace: send, read until the end, say how it ended
# (recv returning 0: eof; ECONNRESET: reset), then keep the socket open
# until a line on stdin (the TAS side waits in FIN_WAIT2 meanwhile).
CLIENT = """
import json, socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=60)
s.sendall(b"ping" if sys.argv[2] == "ping" else bytes(1000))
got, end = b"", "eof"
try:
    while (d := s.recv(65536)):
        got += d
except ConnectionResetError:
    end = "reset"
print(json.dumps({"end": end, "got": got.decode()}), flush=True)
sys.stdin.readline()
s.close()
"""


def flows(d, *args):
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, "flows", "--json",
                        *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["flows"]


def on_port(d, port, *args):
    return [f for f in flows(d, *args) if f["local_port"] == port]


def wait_listing(d, port, want, what):
    """Wait until the port's rows (TIME_WAIT pairs too) are want, as (state,
    app) pairs; the last listing seen goes into the failure."""
    seen = []
    try:
        wait_until(lambda: seen.append(on_port(d, port, "--time-wait")) or
                   [(r["state"], r["app"]) for r in seen[-1]] == want, what)
    except AssertionError as e:
        raise AssertionError(f"{e}: last listing {seen[-1] if seen else None}, "
                             f"counters {counters(d)}") from None


def grown(d, before):
    now = counters(d)
    return lambda key: now.get(key, 0) - before.get(key, 0)


def start_server(procs, d, port, what, how, reuse="reuse"):
    srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                            sys.executable, "-u", "-c", SERVER, str(port), what, how, reuse],
                           text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    procs.append(srv)
    return srv, srv.stdout.readline().strip()


def start_client(procs, d, port, what):
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-u", "-c", CLIENT,
                            str(port), what], text=True, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(cli)
    return cli


def end_server(srv, how):
    """Make the server close / exit / die as `how` says, once it served."""
    assert srv.stdout.readline().strip() == "served", srv.stderr.read()
    if how == "kill":
        srv.send_signal(signal.SIGKILL)
        srv.wait(timeout=60)
    elif how == "_exit":
        assert srv.wait(timeout=60) == 0, srv.stderr.read()
    else:
        assert srv.stdout.readline().strip() == "closed", srv.stderr.read()


def served_again(procs, d, port):
    """A new server process on the port gets a connection and answers it."""
    before = counters(d)
    srv, first = start_server(procs, d, port, "ping", "_exit")
    assert first == "listening", srv.stderr.read()
    cli = start_client(procs, d, port, "ping")
    end_server(srv, "_exit")
    res = json.loads(cli.stdout.readline())
    cli.stdin.write("\n")
    cli.stdin.flush()
    finish(cli, "second client")
    now = counters(d)
    assert res == {"end": "eof", "got": "pong"}, {k: v - before.get(k, 0)
                                                  for k, v in now.items() if v != before.get(k, 0)}


@pytest.mark.parametrize("how", ["close", "_exit", "kill"])
@pytest.mark.parametrize("what", ["ping", "unread"])
def test_peer_sees_fin_or_reset_and_nothing_is_left(daemon, procs, what, how):
    port = 7400 + 10 * ["ping", "unread"].index(what) + ["close", "_exit", "kill"].index(how)
    before = counters(daemon)
    srv, first = start_server(procs, daemon, port, what, how)
    assert first == "listening", srv.stderr.read()
    cli = start_client(procs, daemon, port, what)
    end_server(srv, how)
    res = json.loads(cli.stdout.readline())
    g = grown(daemon, before)
    if what == "unread":
        # Linux: closing a socket with unread data resets the connection
        assert res == {"end": "reset", "got": ""}
        assert g("tcp_rst_unread") == 1
    else:
        assert res == {"end": "eof", "got": "pong"}
        assert g("tcp_rst_unread") == 0
        assert g("tcp_closed_at_exit") == (0 if how == "close" else 1)
        # Our FIN is out (the peer read the end), the peer's is not sent
        # yet: the TAS side is in FIN_WAIT1 until the ACK of our FIN is
        # in, then FIN_WAIT2 -- never ESTABLISHED -- the server's still, or
        # an orphan once the process is gone.
        (row,) = on_port(daemon, port)
        assert row["state"] in ("FIN_WAIT1", "FIN_WAIT2") and row["pid"] == srv.pid, row
        assert row["orphan"] == (how != "close")
        wait_until(lambda: [r["state"] for r in on_port(daemon, port)] == ["FIN_WAIT2"],
                   "the ACK of our FIN")
    cli.stdin.write("\n")
    cli.stdin.flush()
    finish(cli, "Linux client")
    # The close handshake done, nothing of the server's is listed any more,
    # and the fast path's table holds nothing of it either.  TAS closed
    # first after "ping": the pair waits in TIME_WAIT (owned by no app),
    # then expires (tcp.time_wait_ms).
    wait_listing(daemon, port, [("TIME_WAIT", None)] if what == "ping" else [],
                 "the server's connection to go")
    wait_until(lambda: counters(daemon)["tcp_flows_active"] == 0, "the flow to be removed")
    wait_until(lambda: not on_port(daemon, port, "--time-wait"), "TIME_WAIT to expire")
    if how == "close":     # (its listener still holds the port)
        srv.stdin.write("\n")
        srv.stdin.flush()
        finish(srv, "server")
    wait_until(lambda: counters(daemon).get("apps_lingering", 0) == 0,
               "the exited server's segment to be released")
    # the port is free for the next server
    served_again(procs, daemon, port)


def test_listen_beside_a_closing_connection_needs_reuseaddr(daemon, procs):
    """An exited server's connection still closing (the peer has not sent
    its FIN) holds the port as on Linux: a new listener without
    SO_REUSEADDR is refused (EADDRINUSE), one with it gets connections."""
    port = 7430
    srv, first = start_server(procs, daemon, port, "ping", "_exit")
    assert first == "listening", srv.stderr.read()
    cli = start_client(procs, daemon, port, "ping")
    end_server(srv, "_exit")
    assert json.loads(cli.stdout.readline()) == {"end": "eof", "got": "pong"}
    (row,) = on_port(daemon, port)
    assert row["state"] in ("FIN_WAIT1", "FIN_WAIT2") and row["orphan"], row
    before = counters(daemon)
    refused, first = start_server(procs, daemon, port, "ping", "_exit", reuse="noreuse")
    assert first == "listen failed 98", refused.stderr.read()     # EADDRINUSE
    finish(refused, "refused server")
    assert grown(daemon, before)("tcp_listen_port_busy") == 1
    served_again(procs, daemon, port)
    cli.stdin.write("\n")
    cli.stdin.flush()
    finish(cli, "Linux client")
    wait_until(lambda: not on_port(daemon, port), "the old connection to go")


def iperf3_once(procs, d, port, streams):
    """iperf3 -s -1 under tas-run, the kernel's iperf3 client against it;
    returns the server's pid and what the client measured."""
    srv = tas_run(procs, d, "iperf3", "-s", "-1", "-p", str(port), "--forceflush",
                  stderr=subprocess.STDOUT)
    line = srv.stdout.readline()
    while line and "listening" not in line:
        line = srv.stdout.readline()
    assert line, "iperf3 server did not start"
    cli = in_peer(procs, d, "iperf3", "-c", "10.0.0.2", "-p", str(port), "-t", "1",
                  "-P", str(streams), "-J")
    out, err = cli.communicate(timeout=120)
    res = json.loads(out or "{}")
    assert cli.returncode == 0, res.get("error", err)
    out, _ = srv.communicate(timeout=60)
    assert srv.returncode == 0 and "libtas:" not in out, out[-2000:]
    return srv.pid, res["end"]["sum_received"]["bytes"]


def test_iperf3_servers_one_after_another(daemon, procs):
    """The user's report: after `iperf3 -s -1` under tas-run exited, its
    flows stayed ESTABLISHED and the next iperf3 server's client was
    refused.  Three in a row on one port, four streams each."""
    port = 7440
    for _ in range(3):
        pid, received = iperf3_once(procs, daemon, port, 4)
        assert received > 0
        wait_until(lambda: not [f for f in flows(daemon) if f["pid"] == pid],
                   "the exited iperf3's flows to go")
        wait_until(lambda: counters(daemon).get("apps_lingering", 0) == 0,
                   "the exited iperf3's segment to be released")
    assert counters(daemon)["tcp_flows_active"] == 0
    assert counters(daemon).get("app_bad_cmd", 0) == 0


# Listens and never accepts; exits (os._exit) or waits to be killed on a
# line from stdin.
NO_ACCEPT = """
import os, socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=8)   # SO_REUSEADDR too
print("listening", flush=True)
sys.stdin.readline()
os._exit(0)
"""

# In the peer namespace: connect, send nothing, say when connected, then read
# until the end and say how it ended.
IDLE_CLIENT = """
import json, socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=60)
print("connected", flush=True)
end = "eof"
try:
    while s.recv(65536):
        pass
except ConnectionResetError:
    end = "reset"
print(json.dumps({"end": end}), flush=True)
"""


@pytest.mark.parametrize("how", ["_exit", "kill"])
def test_connection_never_accepted_is_reset_when_the_server_goes(daemon, procs, how):
    """Linux resets the connections in a listener's accept queue when its
    process exits; a connection TAS handed over to the process (at its SYN)
    but that accept never took must end the same way, not with a FIN."""
    port = 7450 + ["_exit", "kill"].index(how)
    before = counters(daemon)
    srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", daemon.instance, "--",
                            sys.executable, "-u", "-c", NO_ACCEPT, str(port)], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    cli = subprocess.Popen(["ip", "netns", "exec", daemon.netns, sys.executable, "-u", "-c",
                            IDLE_CLIENT, str(port)], text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    procs.append(cli)
    assert cli.stdout.readline().strip() == "connected", cli.stderr.read()
    # established on the TAS side too (the handshake's final ACK is in)
    wait_until(lambda: [r["state"] for r in on_port(daemon, port)] == ["ESTABLISHED"],
               "the connection to be established")
    if how == "kill":
        srv.send_signal(signal.SIGKILL)
    else:
        srv.stdin.write("\n")
        srv.stdin.flush()
    srv.wait(timeout=60)
    assert json.loads(cli.stdout.readline()) == {"end": "reset"}
    finish(cli, "Linux client")
    assert grown(daemon, before)("tcp_rst_unaccepted") == 1
    wait_listing(daemon, port, [], "the connection to go")
