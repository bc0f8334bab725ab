"""Test helpers: a real TAS daemon with its own peer namespace per test.

Every daemon gets its own instance name, namespace and interface, and is
always stopped and its namespace removed, even when the test fails.
"""
import itertools
import os
import time

from pyroute2 import netns

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


def write_config(path, instance, ns, iface, device="net_tap", extra="", hugepages="auto",
                 fp_cores=(1,), tas_extra="", dpdk_extra=""):
    path.write_text(f"""
[tas]
instance = "{instance}"
ip = "10.0.0.2"
{tas_extra}

[dpdk]
device = "{device}"
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
    def __init__(self, tmp_path, device="net_tap", extra="", hugepages="auto", fp_cores=(1,),
                 dpdk_extra="", instance=None, tas_extra=""):
        """instance: a chosen name (for tests that prepare names beforehand);
        tas_extra, dpdk_extra: more keys for the [tas] and [dpdk] sections."""
        instance = instance or unique("t")
        ns, self.iface = unique("tasns"), unique("dt")
        cfg = write_config(tmp_path / f"{instance}.toml", instance, ns, self.iface,
                           device, extra, hugepages, fp_cores, tas_extra, dpdk_extra)
        super().__init__(cfg, instance, ns)

    def stop(self):
        rc = super().stop()
        if self.netns in netns.listnetns():
            netns.remove(self.netns)
        return rc
