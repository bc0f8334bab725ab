"""Dual-stack AF_INET6 sockets under libtas: IPv4 traffic of a socket on ::
(or on an IPv4-mapped address) goes through TAS; IPv6 proper stays on the
kernel stack."""
import json
import subprocess
import sys

from libtas_helpers import counters, finish, in_peer, tas_run

SERVER = r"""
import json, socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(4)
print(json.dumps({"listening": s.getsockname()[:2]}), flush=True)
c, peer = s.accept()
data = b""
while chunk := c.recv(65536):
    data += chunk
c.sendall(b"got %d" % len(data))
c.close()
print(json.dumps({"peer": peer[0], "bytes": len(data),
                  "family": c.family == socket.AF_INET6}), flush=True)
"""

CLIENT = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
s.sendall(b"x" * int(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"""

IPV6_PROPER = r"""
import json, socket
out = {}
# IPv6 proper on a taken-over socket moves to the kernel: ::1 works end to end
srv = socket.socket(socket.AF_INET6)
srv.bind(("::1", 0))
srv.listen(1)
port = srv.getsockname()[1]
cli = socket.socket(socket.AF_INET6)
cli.connect(("::1", port))
acc, _ = srv.accept()
cli.sendall(b"hello6")
out["v6_loopback"] = acc.recv(10).decode()
# IPV6_V6ONLY before bind: the kernel's too
v6 = socket.socket(socket.AF_INET6)
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
v6.bind(("::", 0))
out["v6only"] = v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
print(json.dumps(out))
"""


def test_dual_stack_listener_takes_ipv4_on_tas(daemon, procs):
    before = counters(daemon)["tcp_rx_bytes"]
    srv = tas_run(procs, daemon, sys.executable, "-c", SERVER, "5301")
    assert json.loads(srv.stdout.readline())["listening"] == ["::", 5301]
    cli = in_peer(procs, daemon, sys.executable, "-c", CLIENT, "5301", str(4 << 20))
    assert finish(cli, "client").strip() == f"got {4 << 20}"
    r = json.loads(finish(srv, "dual-stack server").strip().splitlines()[-1])
    assert r == {"peer": "::ffff:10.0.0.1", "bytes": 4 << 20, "family": True}
    assert counters(daemon)["tcp_rx_bytes"] - before >= 4 << 20   # through TAS


def test_ipv6_proper_stays_on_the_kernel(daemon, procs):
    p = tas_run(procs, daemon, sys.executable, "-c", IPV6_PROPER)
    assert json.loads(finish(p, "ipv6 program")) == {"v6_loopback": "hello6", "v6only": 1}


def test_iperf3_without_dash_4(daemon, procs):
    """iperf3's server opens AF_INET6 on :: unless told -4."""
    before = counters(daemon)["tcp_rx_bytes"]
    srv = tas_run(procs, daemon, "iperf3", "-s", "-1", "-p", "5302", "--forceflush")
    line = srv.stdout.readline()
    while line and "listening" not in line:
        line = srv.stdout.readline()
    cli = subprocess.run(["ip", "netns", "exec", daemon.netns, "iperf3", "-c", "10.0.0.2",
                          "-p", "5302", "-n", "16M", "-J"], capture_output=True, text=True,
                         timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["end"]["sum_sent"]["bytes"] == 16 << 20
    srv.communicate(timeout=60)
    # through TAS (on the kernel it would not move); the server may stop
    # reading at the client's end-of-test message, before the last bytes
    assert counters(daemon)["tcp_rx_bytes"] - before >= 8 << 20
