"""The Linux side of the daemon's port: a kernel TCP stack in a namespace.

net_tap: DPDK creates a tap interface; once the port has started we move its
kernel end into the peer namespace and give it the peer address, so the
namespace's kernel stack talks to the daemon through the DPDK port.
net_af_packet (the default) and net_af_xdp: DPDK binds to one end of a veth
pair we create;
the other end goes into the namespace.  The end DPDK binds stays in the
daemon's namespace with no address, and its kernel stack is kept silent
there: no ARP, no IPv6, no forwarding (see quiet_port_side).  net_memif and
PCI devices need no local peer.
"""
import os
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


VETH_DEVICES = ("net_af_packet", "net_af_xdp")


def ns_iface(cfg):
    """Name of the kernel side of the port inside the peer namespace."""
    if cfg.dpdk.device in VETH_DEVICES:
        return veth_peer_name(cfg.dpdk.iface)
    return cfg.dpdk.iface


def _sysctl(path, value):
    with open(path, "w") as f:
        f.write(value)


def quiet_port_side(iface):
    """The veth end DPDK binds carries TAS's frames, not this namespace's
    traffic: the kernel there must neither answer for TAS's address (ARP,
    or a RST/ICMP for a segment it forwarded or took as its own) nor send
    its own frames (IPv6 router solicitations, MLD) that the PMD would
    receive as outgoing packets.  It has no IPv4 address; NOARP, IPv6 off
    and forwarding off on it make the rest explicit."""
    r = subprocess.run(["ip", "link", "set", "dev", iface, "arp", "off"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError(f"cannot turn ARP off on {iface}: {r.stderr.strip()}")
    for path, value in ((f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6", "1"),
                        (f"/proc/sys/net/ipv4/conf/{iface}/forwarding", "0")):
        if os.path.exists(path):     # no IPv6 in this kernel: nothing to turn off
            _sysctl(path, value)


def _run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError(f"cannot {what} ({' '.join(cmd)}): {r.stderr.strip()}")


def one_queue(iface, peer, ns):
    """net_af_xdp binds one XDP socket, to receive queue 0 of `iface`.  A
    veth delivers a frame to the receive queue numbered as the transmit
    queue the sender picked (by flow hash), and one to another queue would
    pass the XSK program to the kernel (or skip XDP): TAS would never see
    it.  So both ends get one queue."""
    _run(["ethtool", "-L", iface, "rx", "1", "tx", "1"], f"give {iface} one queue")
    _run(["ip", "netns", "exec", ns, "ethtool", "-L", peer, "rx", "1", "tx", "1"],
         f"give {peer} in {ns} one queue")


def create_veth(iface, ns, ip, prefix_len, mac, mtu, single_queue=False):
    """For net_af_packet and net_af_xdp: veth `iface` (DPDK side) <-> peer
    end inside `ns`; single_queue: one queue at each end (net_af_xdp)."""
    ensure_netns(ns)
    peer = veth_peer_name(iface)
    with IPRoute() as ipr:
        if ipr.link_lookup(ifname=iface):
            ipr.link("del", ifname=iface)
        ipr.link("add", ifname=iface, kind="veth", peer=peer)
        idx = _wait_link(ipr, iface)
        ipr.link("set", index=_wait_link(ipr, peer), net_ns_fd=ns)
        ipr.link("set", index=idx, mtu=mtu)
        quiet_port_side(iface)           # before it is up: no IPv6 link-local or DAD
        ipr.link("set", index=idx, state="up")
    _configure_in_ns(ns, peer, ip, prefix_len, mac, mtu)
    if single_queue:
        one_queue(iface, peer, ns)
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


def cpu_mask(cpus):
    """sysfs cpumask text: hex words of 32 CPUs, highest first, comma-separated."""
    bits = sum(1 << c for c in cpus)
    words = []
    while True:
        words.append(f"{bits & 0xffffffff:08x}")
        bits >>= 32
        if not bits:
            return ",".join(reversed(words))


def steer_peer_rx(ns, iface, fp_cores):
    """peer.steer_rx: frames the fast path sends the peer namespace are taken
    in by its kernel inside the sending system call, on the fast path's own
    core: for a Linux sender there, its ACK processing and next transmission
    (tx_drv about 20,000 cycles per frame on this VM).  Receive packet
    steering on the peer's interface moves that work to the CPUs the fast
    path does not own.  Neither place is where a remote host's work would
    be: steering helps bulk transfers from a local sender and hurts
    request/response (the apps' CPU takes the work), so it is off by default
    (README, "Choosing the device").  Best effort: without RPS it stays."""
    cpus = [c for c in range(os.cpu_count() or 1) if c not in fp_cores]
    if not cpus:
        return      # one CPU: nowhere else to go
    path = f"/sys/class/net/{iface}/queues/rx-0/rps_cpus"
    r = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f'echo {cpu_mask(cpus)} > "{path}"'],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"tas: peer receive steering not set on {iface} in {ns} "
              f"(the fast path's core keeps the peer's receive work): {r.stderr.strip()}")


def setup_before_port(cfg):
    """Topology that must exist before EAL init (the veth for af_packet and
    af_xdp)."""
    if cfg.dpdk.device in VETH_DEVICES and cfg.peer.netns:
        create_veth(cfg.dpdk.iface, cfg.peer.netns, cfg.peer.ip, cfg.tas.prefix_len,
                    cfg.peer.mac, cfg.dpdk.mtu, single_queue=cfg.dpdk.device == "net_af_xdp")
        if cfg.peer.steer_rx:
            steer_peer_rx(cfg.peer.netns, veth_peer_name(cfg.dpdk.iface), cfg.dpdk.fp_cores)


def port_side_mac(cfg):
    """A locally administered unicast MAC for the kernel side of the port's
    veth end: neither TAS's nor the peer's."""
    taken = {cfg.tas.mac.lower(), cfg.peer.mac.lower()}
    while True:
        b = bytearray(os.urandom(6))
        b[0] = (b[0] & 0xfc) | 0x02
        mac = ":".join(f"{x:02x}" for x in b)
        if mac not in taken:
            return mac


def hand_frames_to_pmd_only(cfg):
    """Starting the port gave the veth end DPDK binds TAS's MAC, so the
    kernel there took every frame for TAS as its own: besides the PMD's
    copy, each went through IP input and a route lookup that ends in a
    drop (no address), with a route cache entry made and freed per frame.
    Under another MAC the frames still reach the PMD (a veth filters no
    addresses and packet sockets see other hosts' frames), and IP input
    drops them at once as for another host: net_af_packet bulk from a
    local Linux sender +20-45 % at MTU 1500, +5-8 % at 9000."""
    _run(["ip", "link", "set", "dev", cfg.dpdk.iface, "address", port_side_mac(cfg)],
         f"give {cfg.dpdk.iface} a MAC of its own")


def setup_after_port(cfg):
    if cfg.dpdk.device == "net_af_packet" and cfg.peer.netns:
        hand_frames_to_pmd_only(cfg)
    if cfg.dpdk.device == "net_tap" and cfg.peer.netns:
        attach_tap(cfg.dpdk.iface, cfg.peer.netns, cfg.peer.ip, cfg.tas.prefix_len,
                   cfg.peer.mac, cfg.dpdk.mtu)
        if cfg.peer.steer_rx:
            steer_peer_rx(cfg.peer.netns, cfg.dpdk.iface, cfg.dpdk.fp_cores)


def teardown(cfg):
    """Remove what setup created (the tap vanishes with the DPDK port)."""
    if cfg.dpdk.device in VETH_DEVICES:
        delete_veth(cfg.dpdk.iface)
