"""A peer's tiny MSS is raised to 48, Linux's tcp_min_snd_mss.  A SYN with
MSS 12 and timestamps made the flow's MSS 12 - 12 = 0: the fast path sent
empty segments without end (half a million a second, for as long as the
connection lived); at most 11 wrapped it to about 65,000 and nothing was
sent; MSS 1 made every segment one byte behind 40 of headers.  A raw
scapy client in the peer namespace (tcp_conformance_cases' Wire and Conn;
nftables drops its kernel's RSTs) reads a greeting from a server under
tas-run (the fast path answers its SYNs; the slow path's handshakes clamp
alike)."""
import json
import os
import subprocess
import sys

from libtas_helpers import tas_run

HERE = os.path.dirname(os.path.abspath(__file__))

NFT = """
table inet tinymss {
    chain out {
        type filter hook output priority 0; policy accept;
        tcp sport 40000-49999 tcp flags & rst == rst drop
    }
}
"""

GREETER = """
import random, socket
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 7102))
ls.listen(8)
print("listening", flush=True)
while True:
    c, _ = ls.accept()
    c.sendall(random.Random(3).randbytes(4000))
    c.close()
"""

# The first segments of the greeting with each MSS option, acknowledged one
# by one (the client takes only in-order data).
CLIENT = """
import json, random, sys
sys.path.insert(0, sys.argv[1])
import tcp_conformance_cases as t
from scapy.all import conf
conf.verb = 0
w = t.Wire(*sys.argv[2:7])
want = random.Random(3).randbytes(4000)
out = {}
for name, opts in (("mss12_ts", [("MSS", 12), ("Timestamp", (5, 0))]),
                   ("mss1", [("MSS", 1)]),
                   ("mss8_ts", [("MSS", 8), ("Timestamp", (5, 0))])):
    c = t.Conn(w, 7102, options=opts).open()
    sizes = []
    while len(sizes) < 20 and not c.fin:
        s = c.recv()
        assert s is not None, (name, sizes)
        n = len(bytes(s.payload))
        if n or "F" not in s.flags:
            sizes.append(n)
        c.send("A")
    c.abort()
    out[name] = {"sizes": sorted(set(sizes)), "prefix_ok": want.startswith(c.got)}
print(json.dumps(out))
"""


def test_a_tiny_mss_is_raised_to_48(tas_daemon, procs):
    d = tas_daemon
    subprocess.run(["ip", "netns", "exec", d.netns, "nft", "-f", "-"], input=NFT, text=True,
                   check=True)
    srv = tas_run(procs, d, sys.executable, "-c", GREETER)
    assert srv.stdout.readline() == "listening\n"
    peer_mac = d.ns_run("cat", f"/sys/class/net/{d.iface}/address").stdout.strip()
    r = d.ns_run(sys.executable, "-c", CLIENT, HERE, d.iface, peer_mac, "02:00:00:00:00:02",
                 "10.0.0.1", "10.0.0.2", timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # 48 less the 12 of the timestamp option, or 48; never empty
    assert out == {"mss12_ts": {"sizes": [36], "prefix_ok": True},
                   "mss1": {"sizes": [48], "prefix_ok": True},
                   "mss8_ts": {"sizes": [36], "prefix_ok": True}}
