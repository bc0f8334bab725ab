"""Shared helpers of the TAS benchmarks: daemons on the embedded devices."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from tas.launcher import DaemonProcess  # noqa: E402
from tasd import Daemon, veth_namespace  # noqa: E402


@contextlib.contextmanager
def daemon_and_linux_host(tmp, linux_ip, extra=""):
    """(d, lns): a TAS daemon on the default device with its peer namespace,
    and a Linux host (namespace lns, address linux_ip) a veth away from that
    peer, so that one client namespace reaches both stacks.  Both go at
    the end."""
    d = Daemon(Path(tmp), extra=extra).start()
    lns = None
    try:
        lns, _, _ = veth_namespace(d.netns, "10.0.2.1", linux_ip)
        yield d, lns
    finally:
        if lns:
            subprocess.run(["ip", "netns", "del", lns], capture_output=True)
        d.stop()


def start_memif_pair(tmp, idle_block_us=10000, yield_idle=True, extra="",
                     names=("bencha", "benchb"), pin_apps=False):
    """Two daemons, one memif link: A (memif server, 10.1.0.1), B (client),
    instances named `names` (tests pick their own: instances are machine-wide).
    Each fast path gets its own core (A: 1, B: 0) and shares it with an app;
    idle fast paths yield the CPU (fastpath.yield_when_idle) unless told not
    to, and block after idle_block_us.  pin_apps: the apps run on their fast
    path's CPU (fastpath.pin_apps; tas_bulk.py's TAS-to-TAS row), so each byte
    crosses between the CPUs once, in the memif ring.  extra: more [dpdk]
    keys."""
    sock = os.path.join(tmp, "memif.sock")
    procs = []
    try:
        for name, role, ip, mac, main_core, fp_core in (
                (names[0], "server", "10.1.0.1", "02:00:00:00:01:01", 0, 1),
                (names[1], "client", "10.1.0.2", "02:00:00:00:01:02", 1, 0)):
            path = os.path.join(tmp, f"{name}.toml")
            with open(path, "w") as f:
                f.write(f'[tas]\ninstance = "{name}"\nip = "{ip}"\nmac = "{mac}"\n'
                        f'[dpdk]\ndevice = "net_memif"\nmemif_role = "{role}"\n'
                        f'memif_socket = "{sock}"\nmem_mb = 256\nmbufs = 8191\n'
                        f'main_core = {main_core}\nfp_cores = [{fp_core}]\n{extra}\n'
                        f'[fastpath]\nidle_block_us = {idle_block_us}\n'
                        f'yield_when_idle = {"true" if yield_idle else "false"}\n'
                        f'pin_apps = {"true" if pin_apps else "false"}\n'
                        f'[peer]\nnetns = ""\nip = "10.1.0.254"\n')
            procs.append(DaemonProcess(path, name, None).start())
    except BaseException:
        for d in procs:
            d.stop()
        raise
    return procs


def start_kernel_peer(tmp, device=None, extra="", index=0, steer_rx=False):
    """One daemon with the Linux kernel as peer in namespace benchns<index>
    (instance benchk<index>, interface benchk<index>); device None: the
    config's default; steer_rx: peer.steer_rx (tas_bulk.py's TAS-to-Linux rows)."""
    name, ns = f"benchk{index}", f"benchns{index}"
    dev = f'device = "{device}"\n' if device else ""
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f'[tas]\ninstance = "{name}"\nip = "10.0.0.2"\n'
                f'[dpdk]\n{dev}iface = "{name}"\nmem_mb = 256\n'
                f'mbufs = 8191\n{extra}\n[peer]\nnetns = "{ns}"\nip = "10.0.0.1"\n'
                f'steer_rx = {"true" if steer_rx else "false"}\n')
    return DaemonProcess(path, name, ns).start()


def stop_kernel_peer(daemon):
    """Stop it and remove its namespace (the daemon leaves it behind)."""
    try:
        daemon.stop()
    finally:
        subprocess.run(["ip", "netns", "del", daemon.netns], capture_output=True)
