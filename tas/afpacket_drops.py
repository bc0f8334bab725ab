"""Frames the kernel dropped because net_af_packet's receive ring was full.

DPDK 22.11's af_packet PMD reports no missed frames (its imissed stays 0),
but the kernel counts them per packet socket: PACKET_STATISTICS returns the
drops since the last read and resets them.  The PMD never reads them, so
the daemon does, through its own descriptors of the PMD's sockets (the only
AF_PACKET sockets the daemon holds), and adds them to port_rx_ring_drops.
"""
import os
import socket
import struct

SOL_PACKET = 263
PACKET_STATISTICS = 6
COUNTER = "port_rx_ring_drops"


def packet_socket_fds():
    """Descriptors of this process's AF_PACKET sockets."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue                     # closed meanwhile (the listing's own fd)
        try:
            if s.family == socket.AF_PACKET:
                fds.append(fd)
        finally:
            s.close()
    return fds


class RingDrops:
    """Call tick() periodically: adds the sockets' new drops to the counter."""

    def __init__(self, stats):
        self.stats = stats
        self.socks = [socket.socket(fileno=os.dup(fd)) for fd in packet_socket_fds()]
        if not self.socks:
            raise RuntimeError("net_af_packet: no AF_PACKET socket found in the daemon "
                               "(cannot count the kernel's ring drops)")
        stats.set(COUNTER, 0)
        self.tick()                      # what the kernel dropped before the port started

    def tick(self):
        for s in self.socks:
            _, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            if drops:
                self.stats.add(COUNTER, drops)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
