"""Foundation: the daemon answers ARP and ping through a real DPDK port,
refuses to start twice, rejects bad config clearly and cleans up after itself."""
import os
import subprocess
import sys

import pytest

from bindings import stats
from pyroute2 import netns
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace


def ping(d, count=3):
    return d.ns_run("ping", "-c", str(count), "-i", "0.2", "-W", "2", "10.0.0.2")


def test_ping_through_dpdk_tap(tas_daemon):
    r = ping(tas_daemon)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 received" in r.stdout
    # Counters are bumped right after the burst that carried the reply.
    wait_until(lambda: stats.read("tas", tas_daemon.instance)["tx_pkts"] >= 4, "tx counter")
    c = stats.read("tas", tas_daemon.instance)
    assert c["icmp_echo_replies"] >= 3
    assert c["arp_replies"] >= 1
    assert c["rx_pkts"] >= 4
    # The kernel peer learned the daemon's configured MAC, not the tap's own.
    neigh = tas_daemon.ns_run("ip", "neigh", "show", "10.0.0.2").stdout
    assert "02:00:00:00:00:02" in neigh


def test_ping_through_af_packet_veth(make_daemon):
    d = make_daemon(device="net_af_packet").start()
    r = ping(d)
    assert r.returncode == 0, r.stdout + r.stderr + "".join(d.output)


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
