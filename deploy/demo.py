"""The main job on the embedded defaults: start the daemon on a DPDK virtual
device with the Linux kernel as peer in a namespace, run real workloads
through it, and print a result table next to a plain-Linux baseline."""
import json
import os
import re
import subprocess
import sys

from pyroute2 import IPRoute, netns

from bindings import stats
from deploy import transfers
from deploy.report import print_table
from tas import config
from tas import run as tas_run
from tas.app import TasApp
from tas.launcher import DaemonProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_NS = "tas-demo-linux"
PING_COUNT = 300
PING_INTERVAL = "0.005"
TRANSFER = 128 << 20


def parse_ping(out):
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    return {"ok": bool(sent) and sent.group(1) == sent.group(2),
            "result": f"{sent.group(2)}/{sent.group(1)} replies" if sent else "no replies",
            "latency": f"avg {rtt.group(2)} ms, max {rtt.group(3)} ms" if rtt else "-"}


def ping_cmd(target):
    return ["ping", "-q", "-c", str(PING_COUNT), "-i", PING_INTERVAL, "-W", "2", target]


def iperf3_row(name, env, client_ns, server_ip, port):
    """Unmodified iperf3: server here (with `env`), client in `client_ns`."""
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-4", "-p", str(port), "--forceflush"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = srv.stdout.readline()
        while line and "listening" not in line:
            line = srv.stdout.readline()
        cli = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip,
                              "-p", str(port), "-n", "64M", "-J"],
                             capture_output=True, text=True, timeout=300)
        srv.wait(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    if cli.returncode != 0:
        return {"workload": name, "ok": False, "result": "iperf3 failed", "latency": "-"}
    end = json.loads(cli.stdout)["end"]
    sent, rcvd = end["sum_sent"], end["sum_received"]
    # The server reports what it had read when the client's end-of-test
    # message reached it, which can be a little less than was sent; the
    # client itself sometimes sends one 128 KiB block more than -n asks.
    return {"workload": name, "ok": sent["bytes"] >= 64 << 20 and rcvd["bytes"] > 0,
            "result": f"{sent['bytes'] >> 20} MiB sent, {rcvd['bytes'] >> 20} MiB counted",
            "latency": f"{rcvd['bits_per_second'] / 8e6:.0f} MB/s"}


def transfer_row(name, result):
    n, same, secs = result
    return {"workload": name, "ok": same and n == TRANSFER,
            "result": f"{n >> 20} MiB, sha256 {'equal' if same else 'DIFFERS'}",
            "latency": f"{n / secs / 1e6:.0f} MB/s"}


class LinuxBaseline:
    """A second namespace joined to the root by a veth pair: kernel to kernel."""

    def __enter__(self):
        if BASELINE_NS in netns.listnetns():
            netns.remove(BASELINE_NS)
        netns.create(BASELINE_NS)
        with IPRoute() as ipr:
            ipr.link("add", ifname="tdemo0", kind="veth", peer="tdemo1")
            idx = ipr.link_lookup(ifname="tdemo0")[0]
            ipr.link("set", index=ipr.link_lookup(ifname="tdemo1")[0], net_ns_fd=BASELINE_NS)
            ipr.addr("add", index=idx, address="10.9.0.2", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        subprocess.run(["ip", "netns", "exec", BASELINE_NS, "sh", "-c",
                        "ip addr add 10.9.0.1/24 dev tdemo1 && ip link set tdemo1 up "
                        "&& ip link set lo up"], check=True)
        return self

    def __exit__(self, *exc):
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname="tdemo0"):
                ipr.link("del", ifname="tdemo0")
        netns.remove(BASELINE_NS)

    def rows(self):
        out = subprocess.run(["ip", "netns", "exec", BASELINE_NS, *ping_cmd("10.9.0.2")],
                             capture_output=True, text=True).stdout
        return [{"workload": "ICMP echo, Linux -> Linux (veth)", **parse_ping(out)},
                transfer_row("TCP bulk, Linux -> Linux (veth)",
                             transfers.linux_to_linux(BASELINE_NS, None, "10.9.0.2", 5301,
                                                      TRANSFER, 3)),
                iperf3_row("iperf3 (unmodified), Linux -> Linux (veth)", None, BASELINE_NS,
                           "10.9.0.2", 5302)]


def tas_rows(d, device):
    r = d.ns_run(*ping_cmd("10.0.0.2"))
    rows = [{"workload": f"ICMP echo, Linux peer -> TAS (DPDK {device})", **parse_ping(r.stdout)}]
    with TasApp(d.instance) as app:
        rows.append(transfer_row("TCP bulk, Linux peer -> TAS app",
                                 transfers.linux_to_tas(d.netns, app, 5201, TRANSFER, 1)))
        rows.append(transfer_row("TCP bulk, TAS app -> Linux peer",
                                 transfers.tas_to_linux(d.netns, app, 5202, TRANSFER, 2)))
    rows.append(iperf3_row("iperf3 server (unmodified) under tas-run, Linux client",
                           tas_run.environ(d.instance), d.netns, "10.0.0.2", 5203))
    return rows


# The other stacks' workloads, each against its baseline in the same run.
COMPONENT_DEMOS = [
    ("The whole stack: redis-server with AOF `always`, 256 KiB SETs from a kernel client -- "
     "Linux+ext4, Linux+Strata, TAS+Strata, TAS+zIO+Strata, ORP (TAS daemons with 9000-byte "
     "frames)",
     ["bench/orp_redis.py", "--sizes", "262144", "--keyspaces", "1", "--clients", "kernel",
      "--repeat", "1", "--quick", "--mtu", "9000"]),
    ("TAS: RPC echo by one unmodified C program, TAS<->TAS (memif, tas-run) vs Linux loopback",
     ["bench/tas_rpc.py", "--duration", "0.5", "--sizes", "64", "--conns", "1,64"]),
    ("zIO: echo server making K copies per message, plain vs zio run",
     ["bench/zio_echo.py", "--sizes", "262144,1048576", "--copies", "0,4",
      "--duration", "0.5", "--repeat", "1"]),
    ("Strata: append+fsync on the NVM log vs the disk file system and tmpfs",
     ["bench/strata_fsync.py", "--quick"]),
]


def component_demos():
    ok = True
    for title, cmd in COMPONENT_DEMOS:
        print(f"\n== {title}")
        r = subprocess.run([sys.executable, *cmd], cwd=ROOT)
        if r.returncode != 0:
            print(f"demo: {cmd[0]} failed (exit code {r.returncode})")
        ok = ok and r.returncode == 0
    return ok


def main():
    d = DaemonProcess()
    device = config.load().dpdk.device       # the embedded default: net_af_packet on a veth
    print(f"demo: starting the TAS daemon on {device} (peer: Linux in netns tas-peer)")
    d.start()
    try:
        rows = tas_rows(d, device)
        counters = stats.read("tas", d.instance)
    finally:
        rc = d.stop()
        if "tas-peer" in netns.listnetns():
            netns.remove("tas-peer")
    with LinuxBaseline() as base:
        rows += base.rows()
    print()
    print_table(["workload", "result", "throughput / latency"],
                [[r["workload"], r["result"], r["latency"]] for r in rows])
    print()
    print(stats.format_table({k: v for k, v in counters.items() if v},
                             title="daemon counters (non-zero; tasctl stats shows all)"))
    for r in rows:
        if not r["ok"]:
            print(f"demo: not as expected: {r['workload']} ({r['result']})")
    ok = component_demos() and rc == 0 and all(r["ok"] for r in rows)
    print(f"\ndemo: {'OK' if ok else 'FAILED'} (daemon exit code {rc})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
