"""Frames the kernel dropped because the port's receive ring was full.

net_af_packet: DPDK 22.11's PMD reports no missed frames (its imissed stays
0), but the kernel counts them per packet socket: PACKET_STATISTICS returns
the drops since the last read and resets them.
net_af_xdp: the kernel counts per XDP socket, since the socket was made
(XDP_STATISTICS): frames dropped for want of a fill-ring buffer
(rx_dropped) and for a full receive ring (rx_ring_full).
The PMDs never read these, so the daemon does, through its own descriptors
of the PMD's sockets (the only such sockets the daemon holds), and adds
them to port_rx_ring_drops.
"""
import os
import socket
import struct

SOL_PACKET = 263
PACKET_STATISTICS = 6
AF_XDP = 44
SOL_XDP = 283
XDP_STATISTICS = 7
COUNTER = "port_rx_ring_drops"


def _raw_socket(fd):
    """A socket object on a duplicate of `fd`, of whatever family: Python's
    own detection (getsockname) fails on an AF_XDP socket, so the family
    given here is a placeholder and SO_DOMAIN says the real one."""
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fileno=os.dup(fd))


def sockets_of_family(family):
    """Sockets (duplicates) of this process's descriptors of `family`, each
    socket once: two descriptors of one socket (the AF_XDP PMD holds two)
    would count its drops twice."""
    socks, seen = [], set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            if not target.startswith("socket:") or target in seen:
                continue
            s = _raw_socket(int(name))
        except OSError:
            continue                     # closed meanwhile (the listing's own fd)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == family:
            socks.append(s)
            seen.add(target)
        else:
            s.close()
    return socks


def _packet_drops(s):
    """Drops since the last read (the kernel resets them)."""
    _, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


def _xdp_drops(s):
    """Drops since the socket was made: rx_dropped + rx_ring_full."""
    st = struct.unpack("6Q", s.getsockopt(SOL_XDP, XDP_STATISTICS, 48))
    return st[0] + st[3]


# device -> (socket family, reader, whether the reader's count is cumulative)
_KINDS = {"net_af_packet": (socket.AF_PACKET, _packet_drops, False),
          "net_af_xdp": (AF_XDP, _xdp_drops, True)}


class RingDrops:
    """Call tick() periodically: adds the sockets' new drops to the counter."""

    def __init__(self, stats, device):
        family, self.read, self.cumulative = _KINDS[device]
        self.stats = stats
        self.socks = sockets_of_family(family)
        if not self.socks:
            raise RuntimeError(f"{device}: no socket of the PMD found in the daemon "
                               f"(cannot count the kernel's ring drops)")
        self.seen = [0] * len(self.socks)
        stats.set(COUNTER, 0)
        self.tick()                      # what the kernel dropped before the port started

    def tick(self):
        for i, s in enumerate(self.socks):
            n = self.read(s)
            new = n - self.seen[i] if self.cumulative else n
            if self.cumulative:
                self.seen[i] = n
            if new:
                self.stats.add(COUNTER, new)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


def applies(device):
    return device in _KINDS
