"""Foundation: the daemon answers ARP and ping through a real DPDK port,
refuses to start twice, rejects bad config clearly and cleans up after itself."""
import os
import socket
import subprocess
import sys
import threading

import pytest

from bindings import stats
from pyroute2 import netns
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace


def ping(d, count=3):
    return d.ns_run("ping", "-c", str(count), "-i", "0.2", "-W", "2", "10.0.0.2")


@pytest.mark.parametrize("device", ["net_af_packet", "net_tap"])
def test_ping_through_dpdk_port(make_daemon, device):
    d = make_daemon(device=device).start()
    r = ping(d)
    assert r.returncode == 0, r.stdout + r.stderr + "".join(d.output)
    assert "3 received" in r.stdout
    # Counters are bumped right after the burst that carried the reply.
    wait_until(lambda: stats.read("tas", d.instance)["tx_pkts"] >= 4, "tx counter")
    c = stats.read("tas", d.instance)
    assert c["icmp_echo_replies"] >= 3
    assert c["arp_replies"] >= 1
    assert c["rx_pkts"] >= 4
    # The kernel peer learned the daemon's configured MAC, not the device's own.
    neigh = d.ns_run("ip", "neigh", "show", "10.0.0.2").stdout
    assert "02:00:00:00:00:02" in neigh


@pytest.mark.parametrize("device", ["net_af_packet", "net_af_xdp", "net_tap"])
def test_peer_receive_steering(make_daemon, device):
    """peer.steer_rx steers the peer interface's receive processing (RPS) to
    the CPUs the fast path does not own; by default the kernel's own setting
    (none) stays."""
    from tas.peer import veth_peer_name

    def rps_mask(d):
        iface = veth_peer_name(d.port_iface) if device != "net_tap" else d.port_iface
        got = d.ns_run("cat", f"/sys/class/net/{iface}/queues/rx-0/rps_cpus").stdout
        return int(got.strip().replace(",", ""), 16)

    d = make_daemon(device=device).start()
    assert rps_mask(d) == 0 and ping(d).returncode == 0
    d.stop()
    d = make_daemon(device=device, extra="steer_rx = true").start()   # a [peer] key
    others = sum(1 << c for c in range(os.cpu_count()) if c != 1)   # fp_cores = [1]
    assert rps_mask(d) == others and ping(d).returncode == 0


def test_default_device_is_af_packet_and_its_kernel_side_stays_silent(tas_daemon):
    """The veth end the PMD binds is in the daemon's namespace with no
    address: its kernel must neither answer for TAS (ARP, RST) nor send
    frames of its own there.  The PMD transmits past the taps (qdisc
    bypass), so whatever a sniffer sees leaving that end is the kernel's."""
    d = tas_daemon
    assert d.device == "net_af_packet"
    link = subprocess.run(["ip", "link", "show", "dev", d.port_iface],
                          capture_output=True, text=True, check=True).stdout
    assert "NOARP" in link
    assert "02:00:00:00:00:02" not in link, "the kernel would take TAS's frames as its own"
    with open(f"/proc/sys/net/ipv6/conf/{d.port_iface}/disable_ipv6") as f:
        assert f.read().strip() == "1"
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniff.bind((d.port_iface, 0))
    sniff.settimeout(0.2)
    seen = []
    stop = threading.Event()

    def sniffer():
        while not stop.is_set():
            try:
                seen.append(sniff.recvfrom(65535)[1][2])   # the packet type
            except socket.timeout:
                pass
    t = threading.Thread(target=sniffer)
    t.start()
    try:
        d.ns_run("ip", "neigh", "flush", "all")            # the peer asks ARP again
        before = stats.read("tas", d.instance)
        assert ping(d).returncode == 0
        r = d.ns_run(sys.executable, "-c", CONNECT_CLOSED_PORT)
        assert r.stdout.strip() == "refused", r.stdout + r.stderr
        wait_until(lambda: stats.read("tas", d.instance).get("tcp_rst_sent", 0)
                   > before.get("tcp_rst_sent", 0), "the daemon's RST")
    finally:
        stop.set()
        t.join()
        sniff.close()
    c = stats.read("tas", d.instance)
    assert c["arp_replies"] > before.get("arp_replies", 0)
    # the sniffer saw the peer's frames come in (ARP, echo requests, the SYN)
    assert len([t for t in seen if t != socket.PACKET_OUTGOING]) >= 5
    assert socket.PACKET_OUTGOING not in seen, "the kernel sent frames on the port's veth end"


def ip_input_errors():
    """IP input drops of this namespace that a frame for TAS would cause
    had the kernel taken it as its own (no address: no route)."""
    counts = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            counts.update(zip(names.split()[1:], map(int, values.split()[1:])))
    return counts["InAddrErrors"] + counts["InNoRoutes"]


def test_port_side_kernel_leaves_tas_frames_to_the_pmd(tas_daemon):
    """The veth end keeps a MAC of its own, so its kernel drops the frames
    for TAS at once as another host's instead of routing each one (a route
    lookup and a route cache entry per frame, a fifth of a local sender's
    CPU in bulk transfers)."""
    d = tas_daemon
    before = ip_input_errors()
    r = d.ns_run("ping", "-c", "300", "-i", "0.002", "-q", "10.0.0.2")
    assert r.returncode == 0 and "300 received" in r.stdout, r.stdout + r.stderr
    assert ip_input_errors() - before < 30


CONNECT_CLOSED_PORT = """
import socket
s = socket.socket()
s.settimeout(10)
try:
    s.connect(("10.0.0.2", 5999))
except ConnectionRefusedError:
    print("refused")
"""


def test_runs_without_hugepages(make_daemon):
    """The fallback a machine without hugepages gets: DPDK with --no-huge."""
    d = make_daemon(hugepages="no").start()
    assert "hugepages disabled by config" in "".join(d.output)
    assert ping(d).returncode == 0


def test_starting_twice_is_refused(tas_daemon):
    r = subprocess.run([sys.executable, "-m", "tas.daemon", "-c", str(tas_daemon.config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "already running" in r.stderr
    # The first daemon is untouched and still serving.
    assert ping(tas_daemon, 1).returncode == 0
    assert os.path.exists(stats.page_path("tas", tas_daemon.instance))


def test_sigterm_stops_cleanly_and_removes_shared_memory(make_daemon):
    d = make_daemon().start()
    page = stats.page_path("tas", d.instance)
    assert os.path.exists(page)
    ns = d.netns
    rc = d.stop()
    assert rc == 0, "".join(d.output)
    assert "tas: stopped" in "".join(d.output)
    assert not os.path.exists(page)
    assert not os.path.exists(f"/run/tas/{d.instance}.lock")
    assert not os.path.exists(f"/run/tas/{d.instance}.sock")
    assert not os.path.exists(f"/var/run/dpdk/{d.instance}")
    assert ns not in netns.listnetns()


def test_malformed_packets_are_dropped_and_counted(tas_daemon):
    """Truncated and corrupted frames from the peer's raw socket never reach
    the slow path and the daemon keeps answering."""
    script = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
dst = bytes.fromhex("020000000002"); src = bytes.fromhex("020000000001")
eth = dst + src + b"\x08\x00"
ip_ok = bytes.fromhex("450000280000400040060000") + bytes([10,0,0,1]) + bytes([10,0,0,2])
frames = [
    eth + b"\x45\x00",                                   # truncated IPv4 header
    eth + ip_ok,                                         # bad IP checksum (zero)
    eth + bytes([0x46]) + ip_ok[1:],                     # IHL beyond the packet
    eth + bytes([0x65]) + ip_ok[1:],                     # IP version 6 in a v4 frame
]
for f in frames:
    for _ in range(25):
        s.send(f)
"""
    r = tas_daemon.ns_run(sys.executable, "-c", script, tas_daemon.iface)
    assert r.returncode == 0, r.stderr
    assert ping(tas_daemon, 2).returncode == 0
    c = stats.read("tas", tas_daemon.instance)
    assert c["rx_drop_malformed"] >= 100
    assert c["exc_other"] == 0


def test_tasctl_shows_counters(tas_daemon):
    ping(tas_daemon, 1)
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", tas_daemon.instance, "stats"],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert "icmp_echo_replies" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", tas_daemon.instance, "stats", "--prometheus"],
                       capture_output=True, text=True)
    assert f'kb_tas_rx_pkts{{instance="{tas_daemon.instance}"}}' in r.stdout
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", "no-such-instance", "stats"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no stats page" in r.stderr
