"""Short connections under churn: 20,000 connections, one request each,
from an unmodified kernel client in the peer namespace to a server under
tas-run, every reply checked.  On every other connection the server closes
first and holds TIME_WAIT; the client binds those to 250 ports in turn, so
each pair comes again 40 times and its new SYN must reuse the TIME_WAIT
pair.  The client closes first on the others (kernel-chosen ports).  Afterwards nothing
is left: no flow in the fast path or the slow path, no buffer bytes or
flows charged to the server's uid, and every connection was handed over to
the app at its SYN and accepted there (the listener's pool of provisioned
flows aside)."""
import json
import subprocess
import sys

from libtas_helpers import RECV_EXACT, RECV_UPTO, counters, finish, tas_run
from tasd import wait_until

N = 20_000
PORT = 7410

# Under tas-run: echo 8 bytes; close at once on even numbers (server closes
# first), after the client's EOF on odd ones.
SERVER = RECV_EXACT + r"""
import os, socket, sys, time
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=128)
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = s.accept()
    msg = recv_exact(c, 8)
    c.sendall(msg)
    if int(msg) % 2:
        assert c.recv(1) == b""
    c.close()
print("served", flush=True)
while not os.path.exists(sys.argv[3]):    # attached until the counters are read
    time.sleep(0.05)
"""

CLIENT = RECV_UPTO + r"""
import errno, socket, sys, time
bad = 0
for i in range(int(sys.argv[2])):
    s = socket.socket()
    if i % 2 == 0:
        # The server closes these first: their ports come round again (40
        # times each) while the server holds the old pair in TIME_WAIT.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        while True:
            try:
                s.bind(("0.0.0.0", 41000 + (i // 2) % 250))
                break
            except OSError as e:     # our side of the last one still closing
                if e.errno != errno.EADDRINUSE:
                    raise
                time.sleep(0.001)
    s.connect(("10.0.0.2", int(sys.argv[1])))
    s.sendall(b"%08d" % i)
    got = recv_upto(s, 8)
    bad += got != b"%08d" % i
    if i % 2 == 0:
        assert s.recv(1) == b""      # the server's FIN: ours closes the pair
    s.close()
print(bad)
"""


def tasctl(d, *args):
    out = subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance, *args,
                          "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_twenty_thousand_short_connections_leave_nothing_behind(daemon, procs, tmp_path):
    before = counters(daemon)
    done = tmp_path / "done"
    srv = tas_run(procs, daemon, sys.executable, "-c", SERVER, str(PORT), str(N), str(done))
    assert srv.stdout.readline().strip() == "listening"
    # Kernel-chosen ports above the bound ones: a client TIME_WAIT there
    # would hold a bound port for a minute.
    daemon.ns_run("sysctl", "-qw", "net.ipv4.ip_local_port_range=42000 60999", check=True)
    daemon.ns_run("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", check=True)
    cli = daemon.ns_run(sys.executable, "-c", CLIENT, str(PORT), str(N), timeout=900)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "0", "replies that differ from the request"
    assert srv.stdout.readline().strip() == "served"

    # Closing finishes on the slow path's tick: wait for the state, then
    # assert on the counters.
    # (Flows the fast path opened since the slow path's last look are not
    # among its connections yet: no flow left, too.)
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0 ==
               counters(daemon)["tcp_flows_active"], "all connections closed")
    after = counters(daemon)
    added = after["flows_added"] - before.get("flows_added", 0)
    removed = after["flows_removed"] - before.get("flows_removed", 0)
    assert added == N and removed == N
    assert after["tcp_flows_active"] == 0
    assert after["tcp_handed_over"] - before.get("tcp_handed_over", 0) == N
    # (a rare run saw N - 1: the deltas say which way the other one ended)
    assert after["tcp_closed"] - before.get("tcp_closed", 0) == N, {
        k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    # Accepted in the app without asking the daemon, and counted there: the
    # backlog of 128 never filled.
    assert after.get("tcp_backlog_drops", 0) == before.get("tcp_backlog_drops", 0)
    assert after.get("app_close_unknown_flow", 0) == 0
    # The server closed first on half of them, and the client's ports came
    # round again while those were in TIME_WAIT: reused, not refused.
    assert after["tcp_time_wait_reused"] - before.get("tcp_time_wait_reused", 0) > 0
    assert after.get("tcp_syn_dropped", 0) == before.get("tcp_syn_dropped", 0)
    # Connections already over when the slow path first looked were closed
    # by its sweep in C (include/tas/syn_sweep.h), never a Python object;
    # the rest went through its Python state machine.  Both kinds count in
    # tcp_closed above.
    swept = after.get("tcp_closed_swept", 0) - before.get("tcp_closed_swept", 0)
    assert 0 < swept <= N
    assert tasctl(daemon, "flows")["flows"] == []
    apps = tasctl(daemon, "apps")
    (row,) = [a for a in apps["apps"] if a["listeners"] == [PORT]]
    assert row["flows"] == 0
    # What the uid holds is the listener's pool of provisioned flows (the
    # fast path answers SYNs from it) and nothing more.
    held = apps["per_uid"][str(row["uid"])]
    cfg = tasctl(daemon, "config")["config"]
    per_flow = cfg["buffers"]["rx_buf"] + cfg["buffers"]["tx_buf"]
    # (closed connections give theirs back: up to twice tcp.syn_pool)
    assert 0 < row["provisioned"] <= 2 * cfg["tcp"]["syn_pool"]
    assert held["flows"] == row["provisioned"]
    assert held["buffer_bytes"] == row["provisioned"] * per_flow
    done.touch()
    finish(srv, "server")
