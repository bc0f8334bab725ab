"""Idle connections cost the slow path's tick (next to) nothing: a server
holding hundreds of idle keep-alive clients (bench/rpc_echo under tas-run,
kernel clients in the peer namespace) has them parked (tcp.py, fast path
fp_flow_idle.c), and a tick visits none of them.  A parked connection that
becomes active again is still handled: its data is echoed, the peer's FIN
closes it, every flow is gone at the end, and an idle flow's timestamp
refresh still goes out.  A woken connection whose data goes unacknowledged
still times out and retransmits.  FIN_WAIT2 connections park until the
peer's FIN or their timeout.  Asserted on the daemon's counters, not on
time."""
import json
import os
import subprocess
import sys

from libtas_helpers import ROOT, counters, finish, tas_run
from tasd import wait_until

sys.path.insert(0, os.path.join(ROOT, "bench"))
from tas_idle_conns import CLIENT, RPC_ECHO  # noqa: E402  (the clients, driven on stdin)

PORT = 7420


def start(procs, d, n):
    srv = tas_run(procs, d, RPC_ECHO, "server", str(PORT))
    assert srv.stdout.readline().startswith("listening")
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT,
                            "10.0.0.2", str(PORT), str(n)], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    procs.append(cli)
    assert cli.stdout.readline().strip() == "up", cli.stderr.read()
    return srv, cli


def command(cli, line):
    cli.stdin.write(line + "\n")
    cli.stdin.flush()
    return cli.stdout.readline().strip()


def tasctl(d, *args):
    return json.loads(subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance,
                                      *args, "--json"], capture_output=True, text=True,
                                     check=True, cwd=ROOT).stdout)


def close_all(d, srv, cli):
    """The client closes what it still has: every flow is gone."""
    assert command(cli, "close 0") == "0"
    wait_until(lambda: counters(d)["tcp_conns"] == 0, "every connection closed")
    assert counters(d)["tcp_flows_active"] == 0 and counters(d)["tcp_conns_parked"] == 0
    finish(cli, "client")
    srv.kill()
    srv.communicate()


def all_parked(d, n):
    wait_until(lambda: counters(d).get("tcp_conns_parked", 0) == n, f"{n} connections parked")


def test_idle_connections_are_parked_and_wake_on_data_and_fin(make_daemon, procs):
    n = 600
    d = make_daemon().start()
    before = counters(d)
    srv, cli = start(procs, d, n)
    all_parked(d, n)

    # A hundred ticks with every connection idle: (almost) no visit.  The
    # tick used to visit all n, every tick.
    c0 = counters(d)
    wait_until(lambda: counters(d)["tcp_ticks"] >= c0["tcp_ticks"] + 100, "100 ticks")
    c1 = counters(d)
    ticks = c1["tcp_ticks"] - c0["tcp_ticks"]
    visits = c1["tcp_tick_visits"] - c0["tcp_tick_visits"]
    assert visits <= ticks // 10, f"{visits} visits in {ticks} ticks with {n} idle connections"
    assert c1["tcp_conns_parked"] == n and c1["tcp_conns"] == n
    shown = tasctl(d, "stats")["counters"]     # tasctl stats shows them
    assert shown["tcp_conns_parked"] == n and shown["tcp_tick_visited_last"] < 10

    # Data on parked connections: the echo comes back (the fast path's
    # work), the next tick sees them changed and wakes them (congestion
    # control, timeouts), and they are parked again once idle.
    assert command(cli, "echo 50") == "0"
    wait_until(lambda: counters(d).get("tcp_idle_wakes", 0) >=
               c1.get("tcp_idle_wakes", 0) + 50, "50 connections woken")
    all_parked(d, n)

    # The peer's FIN on parked connections: the server reads EOF and closes,
    # the close completes.
    assert command(cli, "fin 100") == "0"
    wait_until(lambda: counters(d)["tcp_conns"] == n - 100, "100 connections closed")
    all_parked(d, n - 100)

    assert command(cli, "close 0") == "0"
    wait_until(lambda: counters(d)["tcp_conns"] == 0, "every connection closed")
    after = counters(d)
    assert after["tcp_conns_parked"] == 0 and after["tcp_flows_active"] == 0
    added = after["flows_added"] - before.get("flows_added", 0)
    removed = after["flows_removed"] - before.get("flows_removed", 0)
    assert added == removed == n
    assert after.get("sp_errors", 0) == 0
    finish(cli, "client")
    srv.kill()
    srv.communicate()


def test_a_parked_connection_still_refreshes_its_timestamps(make_daemon, procs):
    n = 40
    d = make_daemon(extra="[tcp]\nts_refresh_s = 1\n").start()
    srv, cli = start(procs, d, n)
    all_parked(d, n)
    c0 = counters(d)
    # Each second every idle connection wakes for its refresh ACK (Linux
    # peers offer timestamps) and is parked again.
    wait_until(lambda: counters(d).get("tcp_ts_refresh_acks", 0) >=
               c0.get("tcp_ts_refresh_acks", 0) + 2 * n, "two refreshes of every connection")
    c1 = counters(d)
    assert c1["tcp_idle_parks"] - c0["tcp_idle_parks"] >= 2 * n
    assert command(cli, f"echo {n}") == "0"
    close_all(d, srv, cli)


# In the peer namespace: the server's segments to the clients vanish.
DROP_SERVER = f"""
table inet idle_drop {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp sport {PORT} drop
    }}
}}
"""


def test_a_woken_connection_whose_reply_is_lost_is_retransmitted(make_daemon, procs):
    n = 20
    d = make_daemon().start()
    srv, cli = start(procs, d, n)
    all_parked(d, n)
    c0 = counters(d)
    subprocess.run(["ip", "netns", "exec", d.netns, "nft", "-f", "-"], input=DROP_SERVER,
                   text=True, check=True)
    try:
        # The server echoes, nothing comes back: the woken flows have data
        # outstanding, and their retransmission timeout fires.
        assert command(cli, "send 5") == "0"
        wait_until(lambda: counters(d).get("tcp_timeouts", 0) >= c0.get("tcp_timeouts", 0) + 5,
                   "retransmission timeouts on the woken connections")
    finally:
        subprocess.run(["ip", "netns", "exec", d.netns, "nft", "delete", "table", "inet",
                        "idle_drop"], check=True)
    assert command(cli, "read 5") == "0"      # the retransmissions get through
    all_parked(d, n)
    close_all(d, srv, cli)


# Under tas-run: accept n connections and echo a byte on each, then close
# them all first when stdin says so (the clients keep theirs open: FIN_WAIT2).
CLOSE_FIRST = r"""
import socket, sys
ls = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=1024)
print("listening", flush=True)
conns = []
for _ in range(int(sys.argv[2])):
    c, _ = ls.accept()
    c.sendall(c.recv(1))
    conns.append(c)
sys.stdin.readline()
for c in conns:
    c.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def test_fin_wait2_connections_are_parked_until_the_peer_closes_or_the_timeout(make_daemon,
                                                                                procs):
    """The server closes first and the clients keep their sockets: FIN_WAIT2
    on TAS, parked with a deadline.  The peer's FIN wakes the ones it
    closes (they finish the close); tcp.fin_wait2_ms ends the others."""
    n, port = 200, PORT + 1
    d = make_daemon(extra="[tcp]\nfin_wait2_ms = 3000\n").start()
    before = counters(d)
    srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                            sys.executable, "-c", CLOSE_FIRST, str(port), str(n)], cwd=ROOT,
                           text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening"
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT,
                            "10.0.0.2", str(port), str(n)], text=True, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(cli)
    assert cli.stdout.readline().strip() == "up", cli.stderr.read()
    all_parked(d, n)
    parks = counters(d)["tcp_idle_parks"]
    assert command(srv, "close") == "closed"
    # Each woken by the close, parked again in FIN_WAIT2 once our FIN is
    # acknowledged and the controller settled.
    wait_until(lambda: counters(d)["tcp_idle_parks"] >= parks + n, "parked in FIN_WAIT2")
    all_parked(d, n)
    assert [f["state"] for f in tasctl(d, "flows", "--port", str(port))["flows"]] == \
        ["FIN_WAIT2"] * n
    c0 = counters(d)
    wait_until(lambda: counters(d)["tcp_ticks"] >= c0["tcp_ticks"] + 20, "20 ticks")
    c1 = counters(d)
    assert c1["tcp_tick_visits"] - c0["tcp_tick_visits"] <= 2 * (c1["tcp_ticks"] - c0["tcp_ticks"])
    assert c1["tcp_conns"] == n
    # Our FIN reached the clients; 50 of them close: those connections end
    # (TIME_WAIT, ours: we closed first).
    assert command(cli, "fin 50") == "0"
    wait_until(lambda: counters(d)["tcp_conns"] == n - 50, "50 connections closed")
    assert counters(d)["tcp_closed"] - before.get("tcp_closed", 0) == 50
    # The others: reset when their FIN_WAIT2 time is up.
    wait_until(lambda: counters(d)["tcp_conns"] == 0, "FIN_WAIT2 timeouts")
    after = counters(d)
    assert after["tcp_rst_sent"] - before.get("tcp_rst_sent", 0) >= n - 50
    assert after["tcp_flows_active"] == 0 and after["tcp_conns_parked"] == 0
    srv.stdin.write("\n")
    srv.stdin.flush()
    finish(srv, "server")
    assert command(cli, "close 0") == "0"
    finish(cli, "client")
