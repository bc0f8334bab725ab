"""Test helpers: a real TAS daemon with its own peer namespace per test.

Every daemon gets its own instance name, namespace and interface, and is
always stopped and its namespace removed, even when the test fails.
"""
import itertools
import subprocess
import os
import time

from pyroute2 import netns

from tas import config, peer
from tas.launcher import DaemonProcess

_seq = itertools.count()


def wait_until(pred, what, limit_s=120):
    """Hang guard: poll a state condition (not a performance bound)."""
    deadline = time.monotonic() + limit_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def unique(prefix):
    return f"{prefix}{os.getpid() % 10000}x{next(_seq)}"


def write_config(path, instance, ns, iface, device=None, extra="", hugepages="auto",
                 fp_cores=(1,), tas_extra="", dpdk_extra=""):
    """device None: the config's default (net_af_packet)."""
    dev = f'device = "{device}"' if device else ""
    path.write_text(f"""
[tas]
instance = "{instance}"
ip = "10.0.0.2"
{tas_extra}

[dpdk]
{dev}
iface = "{iface}"
hugepages = "{hugepages}"
mem_mb = 256
mbufs = 8191
fp_cores = {list(fp_cores)}
{dpdk_extra}

[peer]
netns = "{ns}"
ip = "10.0.0.1"
{extra}
""")
    return path


class Daemon(DaemonProcess):
    def __init__(self, tmp_path, device=None, extra="", hugepages="auto", fp_cores=(1,),
                 dpdk_extra="", instance=None, tas_extra=""):
        """device: None for the embedded default (net_af_packet on a veth),
        or net_tap, ...; instance: a chosen name (for tests that prepare
        names beforehand); tas_extra, dpdk_extra: more keys for the [tas]
        and [dpdk] sections.  self.iface: the kernel side of the port in the
        peer namespace (the tap, or the veth's peer end)."""
        instance = instance or unique("t")
        ns = unique("tasns")
        self.port_iface = unique("dt")   # what DPDK binds (a tap or a veth end)
        cfg = write_config(tmp_path / f"{instance}.toml", instance, ns, self.port_iface,
                           device, extra, hugepages, fp_cores, tas_extra, dpdk_extra)
        loaded = config.load(str(cfg))
        self.device, self.iface = loaded.dpdk.device, peer.ns_iface(loaded)
        super().__init__(cfg, instance, ns)

    def stop(self):
        try:
            return super().stop()
        finally:        # also when stopping failed: no namespace left behind
            if self.netns in netns.listnetns():
                netns.remove(self.netns)


def _ip(*args, ns=None, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def veth_namespace(peer_ns, peer_ip, ns_ip, wire_offloads=True):
    """A new namespace a veth away from peer_ns (a second Linux host beside
    TAS): returns (namespace, device in peer_ns, device in it).  Addresses
    are /24.  wire_offloads=False turns off TSO/GSO/GRO and checksum offload
    so a sniffer sees segments as sent.  The caller removes the namespace."""
    ns, vp, vl = unique("lnx"), unique("vp"), unique("vl")
    _ip("ip", "netns", "add", ns)
    _ip("ip", "link", "add", vp, "type", "veth", "peer", "name", vl)
    _ip("ip", "link", "set", vl, "netns", ns)
    _ip("ip", "link", "set", vp, "netns", peer_ns)
    _ip("ip", "addr", "add", f"{peer_ip}/24", "dev", vp, ns=peer_ns)
    _ip("ip", "addr", "add", f"{ns_ip}/24", "dev", vl, ns=ns)
    for n, dev in ((peer_ns, vp), (ns, vl), (ns, "lo")):
        _ip("ip", "link", "set", dev, "up", ns=n)
        if not wire_offloads and dev != "lo":
            _ip("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", ns=n)
    return ns, vp, vl
