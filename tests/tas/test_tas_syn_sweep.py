"""The slow path's sweep over the connections the fast path opened
(include/tas/syn_sweep.h, tas/fastpath/fp_syn_sweep.c): those already over
when it first looks are closed in C, the others are taken by Python.
Short connections from a kernel client in the peer namespace to a Python
server under tas-run, every reply checked.  Whichever way each connection
ended, the daemon must end up as the Python state machine alone left it:
the TIME_WAIT pairs of the connections the server closed first are listed
(`tasctl flows --time-wait`) and reused by a new SYN, no flow, connection
or buffer is left over, and the counters add up.  A connection still open
is listed at once (a request makes the slow path take every connection
from the sweep's list).  Asserted on state and counters, not on time."""
import json
import subprocess
import sys

from libtas_helpers import RECV_EXACT, RECV_UPTO, ROOT, counters, finish, syn_counters, tas_run
from tasd import wait_until

# Under tas-run: per connection echo 8 bytes, then close first ("first") or
# after the client's EOF ("last"); "hold": keep the connections; "reset":
# read again, expecting the client's RST (prints how many said ECONNRESET).  Each
# connection is served in its own thread: a client with several in flight
# may be accepted in another order than it connected (a handshake the slow
# path finished is accepted after later ones the fast path finished), and
# a server serving one at a time would then wait on the wrong connection
# while the client waits on another.  Exits once the file argv[4] exists.
SERVER = RECV_EXACT + r"""
import os, socket, sys, threading, time
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=128)
print("listening", flush=True)
mode, n = sys.argv[2], int(sys.argv[3])
held, resets = [], []
def serve(c):
    msg = recv_exact(c, 8)
    c.sendall(msg)
    if mode == "hold":
        held.append(c)
        return
    if mode == "reset":
        try:
            c.recv(1)
        except ConnectionResetError:
            resets.append(1)
        c.close()
        return
    if mode == "last":
        assert c.recv(1) == b""
    c.close()
threads = []
for _ in range(n):
    c, _ = s.accept()
    threads.append(threading.Thread(target=serve, args=(c,)))
    threads[-1].start()
for t in threads:
    t.join()
if mode == "reset":
    print("resets", len(resets), flush=True)
print("served", flush=True)
while not os.path.exists(sys.argv[4]):
    time.sleep(0.05)
"""

# In the peer namespace: n connections from ports base.. (bound, so that
# they can come again on the same pair), `parallel` at a time: connect all,
# then request each (and close it: "last"), then close each after the
# server's FIN ("first"); "hold": wait on stdin before closing; "rst",
# "first-rst" and "hold-rst": as "last", "first" and "hold", closing with a
# RST (SO_LINGER 0).
CLIENT = RECV_UPTO + r"""
import socket, struct, sys
port, n, parallel, base, mode = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                 int(sys.argv[4]), sys.argv[5])
bad = 0
for first in range(0, n, parallel):
    socks = []
    for i in range(first, min(n, first + parallel)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", base + i))
        s.connect(("10.0.0.2", port))
        socks.append((i, s))
    for i, s in socks:
        s.sendall(b"%08d" % i)
        got = recv_upto(s, 8)
        bad += got != b"%08d" % i
        if mode in ("rst", "first-rst", "hold-rst"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if mode in ("last", "rst"):
            s.close()                    # (the server waits for it before the next)
    if mode.startswith("hold"):
        print("up", flush=True)
        sys.stdin.readline()
    for i, s in socks:
        if mode.startswith("first"):
            assert s.recv(1) == b""      # the server's FIN
        if mode != "rst":
            s.close()
print(bad, flush=True)
"""


def tasctl(d, *args):
    return json.loads(subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance,
                                      *args, "--json"], capture_output=True, text=True,
                                     check=True, cwd=ROOT).stdout)


def on_port(d, port, *args):
    return [f for f in tasctl(d, "flows", *args)["flows"] if f["local_port"] == port]


def delta(d, before):
    now = counters(d)
    return lambda name: now.get(name, 0) - before.get(name, 0)


def run_client(d, port, n, parallel, base, mode, srv=None):
    try:
        out = d.ns_run(sys.executable, "-c", CLIENT, str(port), str(n), str(parallel),
                       str(base), mode, timeout=60)
    except subprocess.TimeoutExpired:
        # the daemon's state first: killing the server changes it
        state = (f"flows {on_port(d, port, '--time-wait')}, counters {counters(d)}, "
                 f"{syn_counters(d)}")
        server = ""
        if srv is not None:
            alive = srv.poll() is None
            srv.kill()
            server = (alive, srv.communicate(timeout=5))
        raise AssertionError(f"client stuck: {state}, server {server}") from None
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", "replies that differ from the request"


def nothing_left(d, port):
    """No connection, flow or buffer beyond the listener's pool."""
    wait_until(lambda: counters(d)["tcp_conns"] == 0 == counters(d)["tcp_flows_active"],
               "every connection closed")
    assert [r for r in on_port(d, port) if r["state"] != "TIME_WAIT"] == []
    apps = tasctl(d, "apps")
    (row,) = [a for a in apps["apps"] if a["listeners"] == [port]]
    assert row["flows"] == 0
    held = apps["per_uid"][str(row["uid"])]
    per_flow = sum(tasctl(d, "config")["config"]["buffers"][k] for k in ("rx_buf", "tx_buf"))
    assert held["flows"] == row["provisioned"]
    assert held["buffer_bytes"] == row["provisioned"] * per_flow


def test_server_closing_first_leaves_time_wait_pairs(make_daemon, procs, tmp_path):
    """The server closes first: each pair is in TIME_WAIT afterwards, swept
    in C or closed by Python, and a new SYN on a pair reuses it."""
    d = make_daemon(extra="\n[tcp]\ntime_wait_ms = 120000\n").start()
    port, n, base = 7440, 48, 43000
    done = tmp_path / "done"
    before = counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), "first", str(n + 1),
                  str(done))
    assert srv.stdout.readline().strip() == "listening"
    run_client(d, port, n, 1, base, "first", srv)
    nothing_left(d, port)
    grew = delta(d, before)
    assert grew("tcp_closed") == n
    wait_until(lambda: len(on_port(d, port, "--time-wait")) == n, "the TIME_WAIT pairs listed")
    pairs = sorted(r["peer_port"] for r in on_port(d, port, "--time-wait"))
    assert pairs == list(range(base, base + n))
    wait_until(lambda: counters(d)["tcp_time_wait"] == n, "the tick's TIME_WAIT gauge")
    # A new connection on the first pair (its SYN above the old sequence
    # space) takes the pair over, in the fast path or the slow one.
    run_client(d, port, 1, 1, base, "first")
    nothing_left(d, port)     # (counted when the slow path or its sweep closes it)
    assert delta(d, before)("tcp_time_wait_reused") == 1
    assert len(on_port(d, port, "--time-wait")) == n
    assert srv.stdout.readline().strip() == "served"
    done.touch()
    finish(srv, "server")
    grew = delta(d, before)
    assert grew("tcp_closed") == n + 1
    # closed in the sweep or in Python, never both
    assert 0 <= grew("tcp_closed_swept") <= n + 1


def served(d, procs, tmp_path, port, n, srv_mode, cli_mode, parallel, base):
    """The SERVER in srv_mode serves one CLIENT run in cli_mode (`parallel`
    at a time from ports base..); once it has served every connection and
    the daemon holds nothing of them: (counter deltas, the server's lines
    before "served", the server, the file that lets it exit)."""
    done = tmp_path / "done"
    before = counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), srv_mode, str(n), str(done))
    assert srv.stdout.readline().strip() == "listening"
    run_client(d, port, n, parallel, base, cli_mode, srv)
    said = []
    while (line := srv.stdout.readline().strip()) != "served":
        assert line, "the server exited before it served every connection"
        said.append(line)
    nothing_left(d, port)
    return delta(d, before), said, srv, done


def test_small_pool_mixes_fast_and_slow_handshakes(make_daemon, procs, tmp_path):
    """A two-connection pool and eight clients at a time: SYNs that find
    the pool empty take the slow path while the others finish in the fast
    path, and such connections are accepted in another order than they
    were made.  Every request is answered and nothing is left over."""
    d = make_daemon(extra="\n[tcp]\nsyn_pool = 2\n").start()
    n = 48
    grew, _, srv, done = served(d, procs, tmp_path, 7443, n, "first", "first", 8, 46000)
    assert grew("tcp_passive_opens") == n == grew("tcp_closed")
    done.touch()
    finish(srv, "server")


def test_client_closing_first_is_swept_without_leftovers(make_daemon, procs, tmp_path):
    """The client closes first: nothing stays (no TIME_WAIT on our side).
    Connections the slow path first saw over were closed by the sweep
    (tcp_closed_swept), their buffers recycled into the listener's pool."""
    d = make_daemon().start()
    port, n = 7441, 200
    done = tmp_path / "done"
    before = counters(d)
    syn_before = syn_counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), "last", str(n), str(done))
    assert srv.stdout.readline().strip() == "listening"
    run_client(d, port, n, 4, 44000, "last")
    assert srv.stdout.readline().strip() == "served"
    nothing_left(d, port)
    grew = delta(d, before)
    assert grew("tcp_closed") == n and grew("tcp_time_wait") == 0
    assert on_port(d, port, "--time-wait") == []
    # (the sequential client's connections are over within a tick)
    swept = grew("tcp_closed_swept")
    assert 0 < swept <= n
    syn = {k: v - syn_before.get(k, 0) for k, v in syn_counters(d).items()}
    assert syn["syn_synced"] == syn["syn_fast"] > 0
    assert syn.get("syn_pool_recycled", 0) > 0
    done.touch()
    finish(srv, "server")


def holding(d, procs, tmp_path, port, n, srv_mode, cli_mode, base):
    """The SERVER in srv_mode and a CLIENT in a "hold" mode with all n
    connections up and waiting: (server, client, the server's exit file)."""
    done = tmp_path / "done"
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), srv_mode, str(n), str(done))
    assert srv.stdout.readline().strip() == "listening"
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT,
                            str(port), str(n), str(n), str(base), cli_mode], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(cli)
    assert cli.stdout.readline().strip() == "up", cli.stderr.read()
    return srv, cli, done


def let_go(cli):
    """The holding client closes its connections and checks the replies."""
    cli.stdin.write("\n")
    cli.stdin.flush()
    assert cli.stdout.readline().strip() == "0"
    finish(cli, "client")


def test_open_connections_are_listed_at_once(tas_daemon, procs, tmp_path):
    """Connections still open wait in the sweep's list until a tick has
    seen them; a request (`tasctl flows`) makes the slow path take them
    all first, so they are listed as they are."""
    d, port, n = tas_daemon, 7442, 6
    srv, cli, done = holding(d, procs, tmp_path, port, n, "hold", "hold", 45000)
    rows = on_port(d, port)
    assert sorted((r["peer_port"], r["state"]) for r in rows) == [
        (45000 + i, "ESTABLISHED") for i in range(n)]
    assert counters(d)["tcp_conns"] == n
    let_go(cli)
    done.touch()
    finish(srv, "server")
    wait_until(lambda: counters(d)["tcp_conns"] == 0 == counters(d)["tcp_flows_active"],
               "every connection closed")


def test_peer_resets_are_taken_in_the_fast_path(make_daemon, procs, tmp_path):
    """Clients that close with a RST (SO_LINGER 0, as health checkers do,
    or a client kernel out of TIME_WAIT buckets) while the server waits for
    more: the server reads ECONNRESET after the reply.  The fast path takes
    each exact RST itself and the sweep closes the connection once the
    server has, without TIME_WAIT.  The slow path sees none of them: passing
    them up made it take every connection of the sweep's list at each RST,
    and from eight client addresses the daemon fell from 38,000 to 16,000
    connections a second, its p99 from 0.7 to 12 ms."""
    d = make_daemon().start()
    port, n = 7444, 64
    grew, said, srv, done = served(d, procs, tmp_path, port, n, "reset", "rst", 4, 47000)
    assert said == [f"resets {n}"]
    assert grew("tcp_rst_received") == n
    assert grew("exc_tcp_flow") == 0          # none went to the slow path
    # (no tcp_rst_sent == 0: a client's ACK the veth reordered behind its RST
    # finds no connection and gets one, as from Linux)
    assert grew("tcp_closed") == 0
    assert on_port(d, port, "--time-wait") == []
    done.touch()
    finish(srv, "server")


def test_a_reset_after_our_fin_leaves_no_time_wait(make_daemon, procs, tmp_path):
    """The server closes first, the client answers its FIN with a RST
    (SO_LINGER 0): as on Linux, the RST ends the connection and no
    TIME_WAIT pair stays, whether the sweep or Python closes it."""
    d = make_daemon(extra="\n[tcp]\ntime_wait_ms = 120000\n").start()
    port, n = 7445, 32
    grew, _, srv, done = served(d, procs, tmp_path, port, n, "first", "first-rst", 4, 48000)
    assert grew("tcp_rst_received") == n
    assert grew("tcp_closed") == 0 and grew("tcp_time_wait_reused") == 0
    assert on_port(d, port, "--time-wait") == []
    done.touch()
    finish(srv, "server")


def test_a_reset_of_a_connection_the_slow_path_holds(make_daemon, procs, tmp_path):
    """Connections the slow path has taken from the sweep (`tasctl flows`
    makes it take them all) are reset by their clients: its tick finds the
    flows reset by the fast path and tells the app, as the RST frame did."""
    d = make_daemon().start()
    port, n = 7446, 6
    before = counters(d)
    srv, cli, done = holding(d, procs, tmp_path, port, n, "reset", "hold-rst", 49000)
    assert len(on_port(d, port)) == n             # the slow path's now
    assert syn_counters(d)["syn_synced"] >= n
    let_go(cli)
    assert srv.stdout.readline().strip() == f"resets {n}"
    assert srv.stdout.readline().strip() == "served"
    nothing_left(d, port)
    grew = delta(d, before)
    assert grew("tcp_rst_received") == n and grew("exc_tcp_flow") == 0
    done.touch()
    finish(srv, "server")
