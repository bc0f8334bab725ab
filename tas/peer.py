"""The Linux side of the daemon's port: a kernel TCP stack in a namespace.

net_tap: DPDK creates a tap interface; once the port has started we move its
kernel end into the peer namespace and give it the peer address, so the
namespace's kernel stack talks to the daemon through the DPDK port.
net_af_packet: DPDK binds to one end of a veth pair we create; the other end
goes into the namespace.  net_memif and PCI devices need no local peer.
"""
import subprocess
import time

from pyroute2 import IPRoute, NetNS, netns


class PeerError(Exception):
    pass


def ensure_netns(name):
    if name not in netns.listnetns():
        netns.create(name)


def remove_netns(name):
    if name in netns.listnetns():
        netns.remove(name)


def _wait_link(ipr, iface, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        idx = ipr.link_lookup(ifname=iface)
        if idx:
            return idx[0]
        if time.monotonic() > deadline:
            raise PeerError(f"interface {iface} did not appear")
        time.sleep(0.02)


def _configure_in_ns(ns, iface, ip, prefix_len, mac, mtu):
    with NetNS(ns) as nsr:
        idx = _wait_link(nsr, iface)
        nsr.link("set", index=idx, state="down")
        nsr.link("set", index=idx, address=mac)
        nsr.link("set", index=idx, mtu=mtu)  # the kernel peer sends frames as big as ours
        nsr.addr("add", index=idx, address=ip, prefixlen=prefix_len)
        nsr.link("set", index=idx, state="up")
        lo = nsr.link_lookup(ifname="lo")
        if lo:
            nsr.link("set", index=lo[0], state="up")


def veth_peer_name(iface):
    return iface[:12] + "-pr"


def create_veth(iface, ns, ip, prefix_len, mac, mtu):
    """For net_af_packet: veth `iface` (DPDK side) <-> peer end inside `ns`."""
    ensure_netns(ns)
    peer = veth_peer_name(iface)
    with IPRoute() as ipr:
        if ipr.link_lookup(ifname=iface):
            ipr.link("del", ifname=iface)
        ipr.link("add", ifname=iface, kind="veth", peer=peer)
        idx = _wait_link(ipr, iface)
        ipr.link("set", index=_wait_link(ipr, peer), net_ns_fd=ns)
        ipr.link("set", index=idx, mtu=mtu)
        ipr.link("set", index=idx, state="up")
    _configure_in_ns(ns, peer, ip, prefix_len, mac, mtu)
    # The peer kernel would leave TCP checksums to "hardware" (a veth has
    # none: the frame reaches AF_PACKET with only the pseudo-header sum), and
    # the fast path drops bad checksums.  A real NIC delivers full ones.
    r = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", peer, "tx", "off"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cannot turn off checksum offload on {peer} in {ns} "
                           f"(ethtool -K {peer} tx off): {r.stderr.strip()}")


def delete_veth(iface):
    with IPRoute() as ipr:
        if ipr.link_lookup(ifname=iface):
            ipr.link("del", ifname=iface)


def attach_tap(iface, ns, ip, prefix_len, mac, mtu):
    """For net_tap: move the started port's kernel interface into `ns`."""
    ensure_netns(ns)
    with IPRoute() as ipr:
        idx = _wait_link(ipr, iface)
        ipr.link("set", index=idx, net_ns_fd=ns)
    _configure_in_ns(ns, iface, ip, prefix_len, mac, mtu)


def setup_before_port(cfg):
    """Topology that must exist before EAL init (the veth for af_packet)."""
    if cfg.dpdk.device == "net_af_packet" and cfg.peer.netns:
        create_veth(cfg.dpdk.iface, cfg.peer.netns, cfg.peer.ip, cfg.tas.prefix_len,
                    cfg.peer.mac, cfg.dpdk.mtu)


def setup_after_port(cfg):
    if cfg.dpdk.device == "net_tap" and cfg.peer.netns:
        attach_tap(cfg.dpdk.iface, cfg.peer.netns, cfg.peer.ip, cfg.tas.prefix_len,
                   cfg.peer.mac, cfg.dpdk.mtu)


def teardown(cfg):
    """Remove what setup created (the tap vanishes with the DPDK port)."""
    if cfg.dpdk.device == "net_af_packet":
        delete_veth(cfg.dpdk.iface)
