"""TAS behaves on the wire as the Linux stack does.

One run sets up both servers: the same Python server program under tas-run
(TAS at 10.0.0.2) and on the kernel in a namespace of its own (Linux at
10.0.1.2, a veth away from the peer namespace).  scapy drives the same raw
TCP cases (tcp_conformance_cases.py) from the peer namespace against each,
and every case asserts that the two answered alike.  nftables in the peer
namespace drops the RSTs its kernel would send for the raw connections.

A kernel client that connects and writes at once gets its reply from both
without a retransmission (the kernel's own TcpRetransSegs counter).
"""
import errno
import json
import os
import subprocess
import sys

import pytest

from bindings import stats
from libtas_helpers import ROOT, counters
from tas.app import TasApp, TasError
from tasd import Daemon, veth_namespace, wait_until
import tcp_conformance_cases as cases

TAS_MAC = "02:00:00:00:00:02"
LINUX_IP = "10.0.1.2"
HERE = os.path.dirname(os.path.abspath(__file__))

# The server both stacks run: echo, a sink that never reads (with a small
# receive buffer on Linux; TAS's comes from buffers.rx_buf) and a greeter
# that writes and closes first.
SERVER = """
import socket, sys, threading
held = []
def echo(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    c.close()
def sink(c):
    held.append(c)
def greet(c):
    c.sendall(b"hello")
    c.close()
def serve(port, handler, rcvbuf=0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
serve(%d, echo)
serve(%d, sink, 32768)
serve(%d, greet)
print("ready", flush=True)
sys.stdin.read()
""" % (cases.ECHO, cases.SINK, cases.GREET)

NFT_RULES = """
table inet conformance {
    chain out {
        type filter hook output priority 0; policy accept;
        tcp sport %d-%d tcp flags & rst == rst drop
    }
    chain in {
        type filter hook input priority 0; policy accept;
        tcp dport %d tcp flags & (syn | ack) == syn drop
    }
}
""" % (*cases.RAW_PORTS, 7998)

# connect, write at once, read the reply, close: N times.
KERNEL_CLIENT = """
import socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.create_connection((ip, port))
    s.sendall(b"request %d" % i)
    assert s.recv(100) == b"request %d" % i
    s.close()
"""


def sh(*cmd, ns=None, **kw):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, **kw)


def start_server(cmd):
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise AssertionError(f"server did not start: {line}{p.stderr.read()}")
    return p


def stop_server(p):
    p.kill()
    p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        f.close()


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """TAS and Linux serving the same program, scapy's namespace wired to both."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (namespaces, DPDK, nftables)")
    d = Daemon(tmp_path_factory.mktemp("conf"),
               extra="[buffers]\nrx_buf = 65536\n[tcp]\nhandshake_retries = 3\n").start()
    linux_ns, servers = None, []
    try:
        # Segments on the wire as sent: no GSO/GRO, real checksums.
        linux_ns, vp, vl = veth_namespace(d.netns, "10.0.1.1", LINUX_IP, wire_offloads=False)
        sh("nft", "-f", "-", ns=d.netns, input=NFT_RULES)
        # Kernel clients' ports stay out of scapy's range.
        sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=50000 60999", ns=d.netns)
        servers.append(start_server([sys.executable, "-m", "tas.run", "--instance", d.instance,
                                     "--", sys.executable, "-c", SERVER]))
        servers.append(start_server(["ip", "netns", "exec", linux_ns, sys.executable, "-c",
                                     SERVER]))
        peer_mac = json.loads(sh("ip", "-j", "link", "show", "dev", d.iface, ns=d.netns).stdout)
        vp_mac = json.loads(sh("ip", "-j", "link", "show", "dev", vp, ns=d.netns).stdout)
        vl_mac = json.loads(sh("ip", "-j", "link", "show", "dev", vl, ns=linux_ns).stdout)
        targets = {"tas": (d.iface, peer_mac[0]["address"], TAS_MAC, "10.0.0.1", "10.0.0.2"),
                   "linux": (vp, vp_mac[0]["address"], vl_mac[0]["address"], "10.0.1.1",
                             LINUX_IP)}
        yield d, linux_ns, targets
    finally:
        for p in servers:
            stop_server(p)
        if linux_ns:
            subprocess.run(["ip", "netns", "del", linux_ns], capture_output=True)
        d.stop()


@pytest.fixture(scope="module")
def observed(stacks):
    """Every case against both stacks: {stack: {case: observation}}."""
    d, _, targets = stacks
    out = {}
    for stack, args in targets.items():
        r = subprocess.run(["ip", "netns", "exec", d.netns, sys.executable,
                            os.path.join(HERE, "tcp_conformance_cases.py"), *args],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{stack}: {r.stderr}"
        out[stack] = json.loads(r.stdout)
    print(json.dumps(out, indent=1, sort_keys=True))   # shown with -s or on failure
    return out


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_case_matches_linux(observed, case):
    linux, tas = observed["linux"][case], observed["tas"][case]
    assert "error" not in linux, f"the case itself is broken against Linux: {linux}"
    assert tas == linux


def test_cases_met_the_fast_path(stacks, observed):
    """The server's listeners are hand-over ones (libtas): the fast path
    answered the cases' SYNs itself (include/tas/synfast.h), so the cases
    above hold for its SYN-ACKs, its retransmission by the slow path's
    timer included."""
    d, _, _ = stacks
    syn = stats.read("tassyn", d.instance)
    assert syn["syn_fast"] > 0, syn
    # the slow path took each over (its timers, the retransmission above)
    wait_until(lambda: stats.read("tassyn", d.instance)["syn_synced"] ==
               stats.read("tassyn", d.instance)["syn_fast"], "every record taken")


def nstat(ns, name):
    out = sh("nstat", "-az", name, ns=ns).stdout.split()
    return int(out[out.index(name) + 1])


def test_kernel_client_connect_and_write_needs_no_retransmission(stacks):
    """Data right behind the handshake's final ACK reaches the server the
    first time: the client's kernel retransmits nothing (it did, once per
    connection after a 200 ms RTO, when TAS dropped that segment)."""
    d, _, _ = stacks
    before_tas = counters(d)
    for ip in ("10.0.0.2", LINUX_IP):
        retrans = nstat(d.netns, "TcpRetransSegs")
        sh(sys.executable, "-c", KERNEL_CLIENT, ip, str(cases.ECHO), "50", ns=d.netns,
           timeout=120)
        kinds = {k: nstat(d.netns, k) for k in ("TcpExtTCPSynRetrans", "TcpExtTCPLossProbes",
                                               "TcpExtTCPTimeouts")}
        assert nstat(d.netns, "TcpRetransSegs") == retrans, f"retransmissions towards {ip}: {kinds}"
    after = counters(d)
    assert after["tcp_established"] - before_tas.get("tcp_established", 0) >= 50
    # The fast path took the requests (it completes the handshake itself).
    assert after["tcp_rx_segs"] - before_tas.get("tcp_rx_segs", 0) >= 50


def test_rfc5961_counters_and_challenge_rate_limit(stacks, observed):
    """The fast path counted what the conformance cases did to it, and a
    burst of in-window RSTs on one connection earns one challenge ACK per
    tcp.invalid_ratelimit_ms, not one each."""
    d, _, targets = stacks
    c = counters(d)
    assert c["tcp_rst_out_of_window"] >= 2
    assert c["tcp_challenge_acks"] >= 2       # the in-window RST and the SYN
    script = ("import sys; sys.path.insert(0, %r)\n"
              "import tcp_conformance_cases as t\n"
              "from scapy.all import conf\n"
              "conf.verb = 0\n"
              "w = t.Wire(*sys.argv[1:6]); c = t.Conn(w, t.ECHO).open()\n"
              "for i in range(20):\n"
              "    c.send('R', seq=c.snd_nxt + 100 + i)\n"
              "before, ack = c.marker()\n"
              "print(len(before)); c.abort()\n") % HERE
    before = counters(d)
    r = sh(sys.executable, "-c", script, *targets["tas"], ns=d.netns, timeout=120)
    after = counters(d)
    assert int(r.stdout) == 1, "one challenge ACK for the burst"
    assert after["tcp_challenge_acks"] - before["tcp_challenge_acks"] == 1
    assert after["tcp_challenge_acks_limited"] - before["tcp_challenge_acks_limited"] == 19


def test_so_linger_zero_resets(stacks):
    """close() with SO_LINGER {1, 0} under tas-run sends a RST, as on Linux:
    the kernel peer's read fails with ECONNRESET instead of seeing EOF."""
    d, linux_ns, _ = stacks
    server = ("import socket, struct\n"
              "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "s.bind(('0.0.0.0', 7103)); s.listen(1); print('ready', flush=True)\n"
              "c, _ = s.accept(); c.recv(10)\n"
              "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
              "assert struct.unpack('ii', c.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))[0] == 1\n"
              "c.close(); input()\n")
    client = ("import socket, sys\n"
              "s = socket.create_connection((sys.argv[1], 7103)); s.sendall(b'x')\n"
              "try:\n"
              "    print('eof' if s.recv(10) == b'' else 'data')\n"
              "except ConnectionResetError:\n"
              "    print('reset')\n")
    results = {}
    for name, cmd, ip in (("tas", [sys.executable, "-m", "tas.run", "--instance", d.instance,
                                   "--", sys.executable, "-c", server], "10.0.0.2"),
                          ("linux", ["ip", "netns", "exec", linux_ns, sys.executable, "-c",
                                     server], LINUX_IP)):
        before = counters(d)["tcp_rst_sent"]
        p = start_server(cmd)
        try:
            results[name] = sh(sys.executable, "-c", client, ip, ns=d.netns,
                               timeout=60).stdout.strip()
        finally:
            stop_server(p)
        if name == "tas":
            wait_until(lambda: counters(d)["tcp_rst_sent"] > before, "the RST to be counted")
    assert results == {"tas": "reset", "linux": "reset"}


def test_connect_times_out_like_linux(stacks):
    """Every SYN dropped (nftables in the peer namespace, port 7998): a TAS
    client's connect fails with ETIMEDOUT after tcp.handshake_retries, as a
    kernel client's does after tcp_syn_retries."""
    d, linux_ns, _ = stacks
    with TasApp(d.instance) as app:
        with pytest.raises(TasError) as e:
            app.connect("10.0.0.1", 7998)
    assert e.value.errno == errno.ETIMEDOUT
    assert counters(d)["tcp_handshake_timeouts"] >= 1
    sh("sysctl", "-qw", "net.ipv4.tcp_syn_retries=2", ns=linux_ns)
    client = ("import errno, socket\n"
              "try:\n"
              "    socket.create_connection(('10.0.1.1', 7998))\n"
              "except OSError as e:\n"
              "    print(errno.errorcode[e.errno])\n")
    assert sh(sys.executable, "-c", client, ns=linux_ns, timeout=60).stdout.strip() == "ETIMEDOUT"


def test_half_open_connection_is_freed(stacks):
    """A passive open installs its flow with the SYN-ACK; a peer that never
    completes the handshake leaves nothing behind once tcp.handshake_retries
    SYN-ACKs went unanswered (the flow, its buffers and the backlog slot)."""
    d, _, targets = stacks
    before = counters(d)
    script = ("import sys; sys.path.insert(0, %r)\n"
              "import tcp_conformance_cases as t\n"
              "from scapy.all import conf\n"
              "conf.verb = 0\n"
              "w = t.Wire(*sys.argv[1:6]); c = t.Conn(w, t.ECHO)\n"
              "print(c.syn().flags)\n") % HERE
    assert sh(sys.executable, "-c", script, *targets["tas"], ns=d.netns,
              timeout=60).stdout.strip() == "SA"
    assert counters(d)["flows_added"] == before["flows_added"] + 1   # with the SYN-ACK
    wait_until(lambda: counters(d)["tcp_handshake_timeouts"] > before["tcp_handshake_timeouts"],
               "the handshake to time out")
    # Its flow went with it (other cases' connections may still be closing).
    wait_until(lambda: counters(d)["flows_removed"] > before["flows_removed"],
               "the half-open flow to be removed")
    assert counters(d)["tcp_conns"] <= before["tcp_conns"]


def test_tas_client_connection_churn(stacks):
    """A TAS client opening, using and closing 300 connections to one kernel
    server in a row: every one opens (ports in TIME_WAIT are not reused too
    early) and carries its request, and the daemon frees each."""
    d, _, _ = stacks
    server = start_server(["ip", "netns", "exec", d.netns, sys.executable, "-c", SERVER])
    try:
        before = counters(d)
        with TasApp(d.instance) as app:
            for i in range(300):
                flow = app.connect("10.0.0.1", cases.ECHO)
                msg = b"request %d" % i
                flow.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    got += flow.recv(100)
                assert got == msg
                flow.close()
        wait_until(lambda: counters(d)["tcp_closed"] - before.get("tcp_closed", 0) >= 300,
                   "the connections to close")
        after = counters(d)
        assert after["tcp_active_opens"] - before.get("tcp_active_opens", 0) == 300
        assert after["tcp_time_wait"] >= 1     # we closed first: TIME_WAIT is ours
    finally:
        stop_server(server)


def test_ip_options_take_the_slow_path_back(stacks, observed):
    """The fast path leaves segments with IP options to the slow path, which
    hands them back without the options (the ip_options case saw the echo)."""
    d, _, _ = stacks
    assert observed["tas"]["ip_options"] == {"echo": "mopt"}
    assert counters(d).get("tcp_reinjected", 0) >= 1
