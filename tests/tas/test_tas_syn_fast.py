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

from bindings import stats
from libtas_helpers import ROOT, counters, finish, in_peer, tas_run
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


def syn_counters(d):
    return stats.read("tassyn", d.instance)


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
