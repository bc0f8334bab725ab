"""100,000 malformed packets from scapy while a connection is live."""
import json
import os
import subprocess
import sys

import pytest

from bindings import stats
from tas.app import TasApp
from tasd import Daemon
from test_tas_tcp import linux_to_tas

INJECTOR = r"""
import random, socket, sys, time
from scapy.all import Ether, IP, TCP, Raw, raw
iface, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(5)
dst_mac, src_mac = "02:00:00:00:00:02", "02:00:00:00:00:01"
def tcp_ok(**kw):
    return Ether(dst=dst_mac, src=src_mac) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(**kw)
kinds = {"bad_ip_csum": [], "bad_tcp_csum": [], "truncated": [], "bad_offset": [],
         "not_ours": [], "odd_tcp": []}
for i in range(100):
    p = tcp_ok(sport=rng.randrange(1024, 65535), dport=rng.randrange(1, 65535)) / Raw(b"x" * rng.randrange(0, 200))
    b = bytearray(raw(p)); b[24] ^= 0xFF                       # IP checksum byte
    kinds["bad_ip_csum"].append(bytes(b))
    b = bytearray(raw(p)); b[50] ^= 0x5A                       # TCP checksum byte
    kinds["bad_tcp_csum"].append(bytes(b))
    kinds["truncated"].append(raw(p)[:rng.randrange(15, 33)])  # cut inside IP/TCP header
    q = tcp_ok(sport=1000 + i, dport=2000 + i, dataofs=rng.choice([0, 1, 2, 3, 4, 15]))
    kinds["bad_offset"].append(raw(q))
    r = Ether(dst=dst_mac, src=src_mac) / IP(src="10.0.0.1", dst="10.9.9.%d" % (i + 1)) / TCP()
    kinds["not_ours"].append(raw(r))
    opts = [("MSS", rng.randrange(0, 65535)), ("WScale", rng.randrange(0, 255)),
            ("NOP", None), ("Timestamp", (rng.getrandbits(32), 0)), ("SAckOK", b"")]
    rng.shuffle(opts)
    s = tcp_ok(sport=40000 + i, dport=rng.randrange(6000, 7000), flags=rng.choice(["FA", "PA", "U", "E", "C", "FPU"]),
               options=opts[:rng.randrange(0, 5)]) / Raw(b"y" * rng.randrange(0, 64))
    kinds["odd_tcp"].append(raw(s))
frames = [f for v in kinds.values() for f in v]
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
sent = 0
while sent < n:
    for f in frames:
        sock.send(f)
        sent += 1
        if sent % 100 == 0:
            time.sleep(0.002)  # let the daemon keep up: the tap queue is finite
        if sent >= n:
            break
print(sent)
"""


KINDS = ["bad_ip_csum", "bad_tcp_csum", "truncated", "bad_offset", "not_ours", "odd_tcp"]
PER_KIND = 100


def expected_per_kind(total):
    """The injector cycles through KINDS, PER_KIND frames each."""
    cycle = len(KINDS) * PER_KIND
    full, rem = divmod(total, cycle)
    return {k: full * PER_KIND + min(PER_KIND, max(0, rem - i * PER_KIND))
            for i, k in enumerate(KINDS)}


def peer_tx_dropped(d):
    """Frames the peer's kernel dropped on the way to the tap (queue full)."""
    r = d.ns_run("ip", "-s", "-j", "link", "show", "dev", d.iface)
    return json.loads(r.stdout)[0]["stats64"]["tx"]["dropped"]


def test_malformed_storm_is_dropped_and_counted(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root")
    d = Daemon(tmp_path).start()
    try:
        app = TasApp(d.instance)
        before = stats.read("tas", d.instance)
        kernel_before = peer_tx_dropped(d)
        inj = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", INJECTOR,
                                d.iface, "100000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        linux_to_tas(d, app, 5101, 64 << 20, 11)     # a live connection all along
        out, err = inj.communicate(timeout=600)
        assert inj.returncode == 0, err
        assert int(out.strip()) == 100000
        linux_to_tas(d, app, 5102, 1 << 20, 12)      # and still serving afterwards
        after = stats.read("tas", d.instance)
        lost = peer_tx_dropped(d) - kernel_before   # never reached the DPDK port
        delta = {k: after[k] - before.get(k, 0) for k in after}
        expect = expected_per_kind(100000)
        # Malformed or misaddressed: dropped and counted by the fast path.
        # Odd but valid segments for no connection are answered with RST.
        assert lost < 20000   # most of the storm reached the DPDK port
        assert delta["rx_drop_malformed"] + lost >= (expect["bad_ip_csum"] + expect["truncated"] +
                                                     expect["bad_offset"])
        assert delta["rx_drop_bad_csum"] + lost >= expect["bad_tcp_csum"]
        assert delta["rx_drop_not_ours"] + lost >= expect["not_ours"]
        assert delta["tcp_rst_sent"] + lost >= expect["odd_tcp"]
        accounted = (delta["rx_drop_malformed"] + delta["rx_drop_bad_csum"] +
                     delta["rx_drop_not_ours"] + delta["tcp_rst_sent"] + lost)
        assert accounted >= 100000
        assert after.get("sp_errors", 0) == 0
        app.close()
    finally:
        d.stop()
