"""The main job on the embedded defaults: start the daemon on a DPDK virtual
device with the Linux kernel as peer in a namespace, run real workloads
through it, and print a result table next to a plain-Linux baseline."""
import re
import subprocess
import sys

from pyroute2 import IPRoute, netns

from bindings import stats
from tas.launcher import DaemonProcess

BASELINE_NS = "tas-demo-linux"
PING_COUNT = 300
PING_INTERVAL = "0.005"


def parse_ping(out):
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    return {
        "sent": int(sent.group(1)) if sent else 0,
        "received": int(sent.group(2)) if sent else 0,
        "rtt_min_ms": float(rtt.group(1)) if rtt else None,
        "rtt_avg_ms": float(rtt.group(2)) if rtt else None,
        "rtt_max_ms": float(rtt.group(3)) if rtt else None,
    }


def ping_cmd(target):
    return ["ping", "-q", "-c", str(PING_COUNT), "-i", PING_INTERVAL, "-W", "2", target]


def linux_baseline():
    """ICMP echo through a veth pair answered by the Linux kernel."""
    if BASELINE_NS in netns.listnetns():
        netns.remove(BASELINE_NS)
    netns.create(BASELINE_NS)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname="tdemo0", kind="veth", peer="tdemo1")
            idx = ipr.link_lookup(ifname="tdemo0")[0]
            ipr.link("set", index=ipr.link_lookup(ifname="tdemo1")[0], net_ns_fd=BASELINE_NS)
            ipr.addr("add", index=idx, address="10.9.0.2", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        subprocess.run(["ip", "netns", "exec", BASELINE_NS, "sh", "-c",
                        "ip addr add 10.9.0.1/24 dev tdemo1 && ip link set tdemo1 up"],
                       check=True)
        out = subprocess.run(["ip", "netns", "exec", BASELINE_NS, *ping_cmd("10.9.0.2")],
                             capture_output=True, text=True).stdout
        return parse_ping(out)
    finally:
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname="tdemo0"):
                ipr.link("del", ifname="tdemo0")
        netns.remove(BASELINE_NS)


def print_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def main():
    rows = []
    d = DaemonProcess()
    print("demo: starting the TAS daemon on net_tap (peer: Linux in netns tas-peer)")
    d.start()
    try:
        r = d.ns_run(*ping_cmd("10.0.0.2"))
        rows.append({"workload": "ICMP echo, Linux peer -> TAS daemon (DPDK net_tap)",
                     **parse_ping(r.stdout)})
        counters = stats.read("tas", d.instance)
    finally:
        rc = d.stop()
        if "tas-peer" in netns.listnetns():
            netns.remove("tas-peer")
    rows.append({"workload": "ICMP echo, Linux -> Linux (veth baseline)", **linux_baseline()})
    print()
    print_table(rows, ["workload", "sent", "received", "rtt_min_ms", "rtt_avg_ms",
                       "rtt_max_ms"])
    print()
    print(stats.format_table(counters, title="daemon counters (tasctl stats)"))
    ok = rc == 0 and all(r["received"] == r["sent"] > 0 for r in rows)
    print(f"\ndemo: {'OK' if ok else 'FAILED'} (daemon exit code {rc})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
