"""100,000 malformed packets from scapy while a connection is live, one kind
at a time, so each kind's counter is checked on its own: the frames the
peer's kernel dropped before the DPDK port are measured per kind too, and a
kind passes only if its own counter accounts for everything that arrived."""
import json
import subprocess
import sys
import threading

import pytest

from bindings import stats
from tas.app import TasApp
from tasd import Daemon, wait_until
from test_tas_tcp import linux_to_tas

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

INJECTOR = r"""
import random, socket, sys, time
from scapy.all import Ether, IP, TCP, Raw, raw
iface, kind = sys.argv[1], sys.argv[2]
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
frames = kinds[kind]
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
sent = 0
for line in sys.stdin:          # "N": send the next N frames, then report the total
    for _ in range(int(line)):
        sock.send(frames[sent % len(frames)])
        sent += 1
        if sent % 100 == 0:
            time.sleep(0.002)   # let the daemon keep up: the device's queue is finite
    print(sent, flush=True)
"""


# Each kind and the counter that must account for it.
KINDS = {"bad_ip_csum": "rx_drop_malformed", "bad_tcp_csum": "rx_drop_bad_csum",
         "truncated": "rx_drop_malformed", "bad_offset": "rx_drop_malformed",
         "not_ours": "rx_drop_not_ours", "odd_tcp": "tcp_rst_sent"}  # valid, no connection
TOTAL = 100000
PER_KIND = TOTAL // len(KINDS) + 1
BATCH = 500


def peer_tx_dropped(d):
    """Frames the kernel dropped on the way to the DPDK port: the peer's
    interface (the tap's queue full) and, on net_af_packet, the PMD's
    receive ring full (the daemon counts those from the kernel's socket
    statistics)."""
    r = d.ns_run("ip", "-s", "-j", "link", "show", "dev", d.iface)
    ring = stats.read("tas", d.instance).get("port_rx_ring_drops", 0)
    return json.loads(r.stdout)[0]["stats64"]["tx"]["dropped"] + ring


def inject(d, kind):
    """Send PER_KIND frames of one kind, in batches the daemon must account for
    (counted, or dropped by the peer's kernel before the port) before the next
    is sent, so a busy machine loses few.  Returns (counted, kernel-dropped)."""
    counter = KINDS[kind]
    before = stats.read("tas", d.instance).get(counter, 0)
    kernel_before = peer_tx_dropped(d)

    def accounted():
        return (stats.read("tas", d.instance).get(counter, 0) - before,
                peer_tx_dropped(d) - kernel_before)
    inj = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", INJECTOR,
                            d.iface, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    try:
        sent = 0
        while sent < PER_KIND:
            inj.stdin.write(f"{min(BATCH, PER_KIND - sent)}\n")
            inj.stdin.flush()
            sent = int(inj.stdout.readline())
            wait_until(lambda: sum(accounted()) >= sent, f"{sent} {kind} frames to be counted")
    finally:
        inj.stdin.close()
        assert inj.wait(timeout=60) == 0
    return accounted()


def test_malformed_storm_is_dropped_and_counted(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        app = TasApp(d.instance)
        before = stats.read("tas", d.instance)
        results = {}
        # a live connection all along: Linux sends 64 MiB while the kinds go in
        failed = []

        def live_transfer():
            try:
                linux_to_tas(d, app, 5101, 64 << 20, 11)
            except BaseException as e:   # re-raised in the test's thread below
                failed.append(e)
        transfer = threading.Thread(target=live_transfer)
        transfer.start()
        try:
            for kind in KINDS:
                results[kind] = inject(d, kind)
        finally:
            transfer.join(timeout=600)
        assert not transfer.is_alive()
        if failed:
            raise failed[0]
        linux_to_tas(d, app, 5102, 1 << 20, 12)      # and still serving afterwards
        print({k: f"{got} counted, {lost} lost in the kernel" for k, (got, lost) in results.items()})
        for kind, (got, lost) in results.items():
            # Most frames reach the DPDK port, and the kind's own counter
            # accounts for every one that did (none count twice).
            assert lost < PER_KIND // 2, f"{kind}: {lost} of {PER_KIND} never reached the port"
            assert got >= PER_KIND - lost, f"{kind}: {KINDS[kind]} counted {got} of {PER_KIND - lost}"
        after = stats.read("tas", d.instance)
        assert after.get("sp_errors", 0) == before.get("sp_errors", 0) == 0
        app.close()
    finally:
        d.stop()
