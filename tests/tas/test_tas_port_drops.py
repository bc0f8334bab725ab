"""Frames the kernel drops before the DPDK port are counted: on the default
net_af_packet device, a full PACKET_MMAP receive ring, on net_af_xdp a full
XDP socket (port_rx_ring_drops, which DPDK 22.11's PMDs do not report)."""
import os
import signal
import sys

import pytest

from bindings import stats
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

FRAMES = 5000

# Frames for an address that is not the daemon's: the fast path drops and
# counts each one it receives (rx_drop_not_ours), and nothing answers.
FLOOD = r"""
import socket, sys
from scapy.all import Ether, IP, TCP, raw
frame = raw(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") /
            IP(src="10.0.0.1", dst="10.9.9.9") / TCP(sport=1234, dport=80))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for _ in range(int(sys.argv[2])):
    s.send(frame)
"""


@pytest.mark.parametrize("device", [None, "net_af_xdp"])
def test_full_receive_ring_drops_are_counted(make_daemon, device):
    d = make_daemon(device=device).start()
    assert d.device == (device or "net_af_packet")
    before = stats.read("tas", d.instance)
    assert "port_rx_ring_drops" in before
    # With the daemon stopped nobody empties the ring (af_packet: 512
    # frames; af_xdp: the 1024 buffers of its fill ring): the kernel must
    # drop most of the flood there.
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        r = d.ns_run(sys.executable, "-c", FLOOD, d.iface, str(FRAMES))
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert r.returncode == 0, r.stderr

    def delta(name):
        return stats.read("tas", d.instance).get(name, 0) - before.get(name, 0)
    # Every frame is accounted for: received and dropped as not ours, or
    # dropped by the kernel at the ring (which may also have dropped a frame
    # of the peer's own, hence at least).
    wait_until(lambda: delta("rx_drop_not_ours") + delta("port_rx_ring_drops") >= FRAMES,
               "every flooded frame to be counted")
    assert delta("port_rx_ring_drops") >= FRAMES // 2
    assert 0 < delta("rx_drop_not_ours") <= FRAMES
    # and none twice: the flood and perhaps a frame or two of the peer's own
    assert delta("rx_drop_not_ours") + delta("port_rx_ring_drops") <= FRAMES + 50
