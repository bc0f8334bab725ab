"""net_af_packet's PACKET_FANOUT group, and what to do when it is taken.

DPDK 22.11's af_packet PMD joins each receive socket to the fanout group
numbered (pid ^ ifindex) & 0xffff (hash, defrag, rollover).  Groups are per
network namespace, and one that already exists for another interface (a
socket of another process on another veth) refuses the join with EINVAL:
"could not set PACKET_FANOUT", no port, the daemon stops.  With several
daemons and a thousand veths made by a test run that happened about once in
four hundred starts.  A new veth gets a new ifindex and so another group
number: the daemon makes the veth again and probes the port again, under a
new vdev name (the failed one stays registered in the EAL).

`fault.af_packet_fanout_taken` reproduces it for the tests: before the port
is probed the daemon itself holds the group the PMD will ask for, on `lo`.
"""
import os
import socket
import struct

SOL_PACKET = 263
PACKET_FANOUT = 18
# PACKET_FANOUT_HASH (0) | FLAG_ROLLOVER (0x1000) | FLAG_DEFRAG (0x8000):
# the PMD's flags; a holder with other flags would be refused itself
PMD_FANOUT_FLAGS = 0x9000
ETH_P_ALL = 3
PROBE_ATTEMPTS = 4


def pmd_group(ifindex, pid=None):
    return ((pid if pid is not None else os.getpid()) ^ ifindex) & 0xffff


def hold_group(group):
    """A packet socket on lo in fanout group `group`: what another process's
    socket on another interface looks like to the PMD."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind(("lo", 0))
    s.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", group | PMD_FANOUT_FLAGS << 16))
    return s


def probe_again(fp, cfg, log, remake_veth, devargs_for):
    """After EAL init: while no port came up, make the veth again (another
    ifindex) and probe a new vdev; returns how many times it did."""
    retries = 0
    while fp.lib.rte_eth_dev_count_avail() == 0 and retries < PROBE_ATTEMPTS:
        retries += 1
        log(f"tas: net_af_packet: no port on {cfg.dpdk.iface} (its PACKET_FANOUT group is "
            f"taken by another socket?); making the veth again, attempt {retries}")
        remake_veth(cfg)
        fp.lib.rte_dev_probe(devargs_for(cfg, retries).encode())
    return retries
