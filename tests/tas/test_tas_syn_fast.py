"""SYNs answered by the fast path (include/tas/synfast.h): a hand-over
listener's connections are opened without the slow path on the way, from
flow buffers it provisioned ahead.  A kernel client in the peer namespace
connects to an unmodified server under tas-run; the SYN counters
(`tassyn` page, shown by `tasctl stats`) say which path answered, and every
connection's bytes must come back intact either way."""
import json
import subprocess
import sys

import pytest

from libtas_helpers import ROOT, counters, finish, in_peer, syn_counters, tas_run
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

# A listener on port argv[1] with a backlog of argv[2], then what follows.
LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(int(sys.argv[2]))
print("listening", flush=True)
"""

# Accepts argv[3] connections one after the other and echoes each until EOF.
SERVER = LISTEN + """
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
s.close()
"""

# n connections in turn, each writing its own bytes at once and reading them
# back (to EOF: the server closes after ours).
CLIENT = """
import json, socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad = 0
def check(s, i):
    msg = (b"%06d" % i) * 100
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return got == msg
for i in range(n):
    bad += not check(socket.create_connection((ip, port)), i)
print(json.dumps({"bad": bad}))
"""

FALLBACKS = ("not_handoff", "pool_empty", "backlog", "odd", "no_taker", "held", "queue_full",
             "flow_table")


def serve_and_connect(procs, d, port, n):
    """Run the echo server for n connections and the client; returns the
    SYN counters' change."""
    before = syn_counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), "64", str(n))
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", CLIENT, "10.0.0.2", str(port), str(n), timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"bad": 0}
    finish(srv, "echo server")
    # the slow path takes over what the fast path opened on its next wake-up
    wait_until(lambda: syn_counters(d).get("syn_synced", 0) == syn_counters(d)["syn_fast"],
               "the slow path to take every connection over")
    after = syn_counters(d)
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def test_fast_path_answers_syns_of_a_kernel_client(tas_daemon, procs):
    n = 40
    delta = serve_and_connect(procs, tas_daemon, 7400, n)
    assert delta["syn_fast"] > 0, delta
    # every SYN was answered once, by one path or the other
    assert delta["syn_fast"] + sum(delta[f"syn_fallback_{w}"] for w in FALLBACKS) == n, delta
    # the slow path took over every connection the fast path opened
    assert delta["syn_synced"] == delta["syn_fast"], delta
    ctl = subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", tas_daemon.instance,
                          "stats"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ctl.returncode == 0, ctl.stderr
    assert "syn_fast" in ctl.stdout and "syn_fallback_pool_empty" in ctl.stdout


def test_empty_pool_falls_back_to_the_slow_path(make_daemon, procs):
    d = make_daemon(extra="\n[tcp]\nsyn_pool = 0\n").start()
    n = 10
    delta = serve_and_connect(procs, d, 7401, n)
    assert delta["syn_fast"] == 0, delta
    assert delta["syn_fallback_pool_empty"] >= 1, delta
    assert delta["syn_fallback_pool_empty"] + delta["syn_fallback_no_taker"] == n, delta


# Accepts nothing until told, then serves 4 connections.
HELD_SERVER = LISTEN + """
sys.stdin.readline()
for _ in range(4):
    c, _ = s.accept()
    c.sendall(c.recv(100))
    c.close()
"""

# 4 connections at once, each sending its number and reading it back.
FOUR_CLIENTS = """
import json, socket, sys, threading
ok = []
def one(i):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
    s.sendall(b"%d" % i)
    ok.append(s.recv(100) == b"%d" % i)
    s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"ok": sum(ok)}))
"""


def test_backlog_holds_and_frees_as_the_app_accepts(tas_daemon, procs):
    """A listener with a backlog of 2 whose app does not accept: the fast
    path opens 2 connections and leaves the next SYNs to the slow path,
    which drops them as the backlog is full (the clients' kernels send
    them again); once the app accepts, the resent SYNs get through."""
    d = tas_daemon
    before, before_tas = syn_counters(d), counters(d)
    srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                            sys.executable, "-c", HELD_SERVER, "7402", "2"], cwd=ROOT, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening"
    cli = in_peer(procs, d, sys.executable, "-c", FOUR_CLIENTS, "10.0.0.2", "7402")
    wait_until(lambda: counters(d).get("tcp_backlog_drops", 0) >
               before_tas.get("tcp_backlog_drops", 0), "a SYN dropped for the full backlog")
    after = syn_counters(d)
    assert after["syn_fast"] - before["syn_fast"] == 2, after
    assert after["syn_fallback_backlog"] > before["syn_fallback_backlog"], after
    srv.stdin.write("accept\n")
    srv.stdin.flush()
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert json.loads(out) == {"ok": 4}
    srv.communicate(timeout=60)
    assert srv.returncode == 0


def tasctl_stats(d):
    """`tasctl stats --json`: the daemon's counters and the SYN page."""
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance, "stats",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def held_uid_flows(d):
    """Flows the apps' uid is charged for, and those provisioned for SYNs."""
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance, "apps",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    apps = json.loads(r.stdout)
    return (sum(u["flows"] for u in apps["per_uid"].values()),
            sum(a["provisioned"] for a in apps["apps"]))


# Accepts argv[3] connections in turn: echoes one message, closes.
ECHO_ONCE = LISTEN + """
if sys.argv[4:] == ["wait"]:
    sys.stdin.readline()       # no socket call meanwhile: nobody reads our queue
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    c.sendall(c.recv(100))
    c.close()
"""

# Connects argv[3] connections; with "hold": each sends its number and reads
# it back, and stays open (our side closed first: FIN_WAIT2, its flow still
# installed) until a line on stdin, which closes the first one; then one
# more connection does the same.  Without: all are connected first, then
# each sends and reads back.  Prints each step.
CONNECTIONS = """
import json, resource, socket, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
ip, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def echo(s, i):
    s.sendall(b"%d" % i)
    return s.recv(100) == b"%d" % i
if mode == "hold":
    held = [socket.create_connection((ip, port), timeout=120) for i in range(n)]
    ok = [echo(s, i) for i, s in enumerate(held)]
    print("held", flush=True)
    late = []
    t = threading.Thread(target=lambda: late.append(
        echo(socket.create_connection((ip, port), timeout=120), n)))
    t.start()
    print("connecting", flush=True)
    sys.stdin.readline()
    held[0].close()
    t.join()
    print(json.dumps({"ok": sum(ok) + sum(late)}), flush=True)
else:
    conns = [socket.create_connection((ip, port), timeout=120) for i in range(n)]
    print("connected", flush=True)
    sys.stdin.readline()
    for i, s in enumerate(conns):
        s.sendall(b"%d" % i)
    print(json.dumps({"ok": sum(s.recv(100) == b"%d" % i for i, s in enumerate(conns))}),
          flush=True)
"""


def peer_connections(procs, d, port, n, mode):
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-u", "-c",
                            CONNECTIONS, "10.0.0.2", str(port), str(n), mode], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(cli)
    return cli


def go(p):
    p.stdin.write("go\n")
    p.stdin.flush()


def test_full_flow_table_falls_back_and_the_connection_waits_for_a_slot(make_daemon, procs):
    """A flow table of 4 (fastpath.max_flows), all taken by connections in
    FIN_WAIT2: the fast path leaves the next SYN to the slow path
    (syn_fallback_flow_table), which has no slot either and drops it
    (tcp_flow_table_full); once one connection is gone, the SYN the client's
    kernel sends again opens it."""
    d = make_daemon(extra="\n[fastpath]\nmax_flows = 4\n").start()
    before, before_tas = syn_counters(d), counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", ECHO_ONCE, "7403", "16", "5")
    assert srv.stdout.readline().strip() == "listening"
    cli = peer_connections(procs, d, 7403, 4, "hold")
    assert cli.stdout.readline().strip() == "held", cli.stderr.read()
    assert cli.stdout.readline().strip() == "connecting"
    wait_until(lambda: counters(d).get("tcp_flow_table_full", 0) >
               before_tas.get("tcp_flow_table_full", 0), "the fifth SYN to find no slot")
    syn = tasctl_stats(d)["syn"]
    assert syn["syn_fallback_flow_table"] > before["syn_fallback_flow_table"], syn
    assert syn["syn_fast"] - before["syn_fast"] == 4, syn
    assert counters(d)["tcp_flows_active"] == 4
    go(cli)
    assert json.loads(cli.stdout.readline()) == {"ok": 5}
    finish(srv, "echo server")
    finish(cli, "Linux client")
    # Every SYN the slow path had no slot for gave its buffers and their
    # charge back: the uid holds only what is provisioned for the SYNs.
    wait_until(lambda: counters(d)["tcp_flows_active"] == 0, "the flows to close")
    wait_until(lambda: held_uid_flows(d)[0] == held_uid_flows(d)[1],
               "the uid's charge to come down to the provisioned flows")


def test_full_notification_queue_falls_back_and_connections_complete(make_daemon, procs):
    """An app that makes no socket call while 2600 connections come in: each
    puts a new-connection and an established entry in its notification
    queue (4096 entries), so the queue fills and the fast path leaves the
    rest of the SYNs to the slow path (syn_fallback_queue_full), which hands
    them over through the app's control socket.  Every connection is
    accepted and echoed once the app runs again."""
    n = 2600
    d = make_daemon(extra="\n[buffers]\nrx_buf = 16384\ntx_buf = 16384\n").start()
    before = syn_counters(d)
    srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                            sys.executable, "-c", ECHO_ONCE, "7404", "4096", str(n), "wait"],
                           cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening"
    cli = peer_connections(procs, d, 7404, n, "all")
    assert cli.stdout.readline().strip() == "connected", cli.stderr.read()
    syn = tasctl_stats(d)["syn"]
    fell = {w: syn[f"syn_fallback_{w}"] - before[f"syn_fallback_{w}"] for w in FALLBACKS}
    assert fell["queue_full"] > 0, fell
    assert syn["syn_fast"] - before["syn_fast"] + sum(fell.values()) == n, (syn, fell)
    go(srv)
    go(cli)
    assert json.loads(cli.stdout.readline()) == {"ok": n}
    finish(srv, "echo server")
    finish(cli, "Linux client")
