"""TAS bulk throughput: one command, one table, one JSON file.

  python bench/tas_bulk.py [--seconds 3] [--repeat 3] [--streams 1,4]
                           [--mtu 1500] [--cc dctcp-rate|none|...] [--buf 1M]
                           [--devices net_af_packet,net_tap] [--reverse]
                           [--no-memif]

Unmodified iperf3 (server and client), in one run, repeated and interleaved:
  tas-tas:      both ends under tas-run on two daemons joined by net_memif
  tas-linux:    server under tas-run, client the Linux kernel in the daemon's
                peer namespace, once per device of --devices (default: the
                embedded default first, then net_tap), each its own daemon,
                with peer.steer_rx on (the sender's ACK processing off the
                fast path's CPU; off by default, see README)
  linux-linux:  both on the Linux kernel across a veth pair
--reverse: the iperf3 server sends (iperf3 -R), so the tas-linux rows
measure TAS to Linux instead of TAS from Linux; --no-memif leaves the
tas-tas row out (for a device comparison).
Each row runs with only its own daemons alive (started and stopped around
it, every repetition): idle daemons of the other rows cost the measured one.
Prints min/median/max MB/s, the median's ratio to linux-linux, and for the
TAS rows what the server's daemon spent: CPU microseconds per segment,
segments per second, ACKs per received data segment and bytes per segment.

Every measurement is bracketed by build/bench/xcpu_probe, the round trip of
a cache line between the two CPUs: the hypervisor of the test VMs puts its
two CPUs on one die (about 100 ns) or on two (about 550 ns) and moves them
while we run, and on two dies every byte that crosses between the CPUs
costs more: TAS to TAS halves, Linux over a veth loses about a fifth.  A
second table compares the rows within each placement ("near": both probes
under FAR_NS, "far": both over it, "mixed": the CPUs moved meanwhile).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import resource
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bindings import stats  # noqa: E402
from deploy.report import print_table, write_json  # noqa: E402
from tas import cycles  # noqa: E402
from tas.run import environ  # noqa: E402
from tas_benchlib import start_kernel_peer, start_memif_pair, stop_kernel_peer  # noqa: E402

LINUX_NS = "bulk-linux"
XCPU_PROBE = os.path.join(ROOT, "build", "bench", "xcpu_probe")
# Round trips seen here: about 45 ns (the two CPUs on one core's threads,
# rare), 95-115 ns (one die), 490-600 ns (two dies)
FAR_NS = 250
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def veth_up():
    veth_down()
    sh("ip", "netns", "add", LINUX_NS)
    sh("ip", "link", "add", "bulk0", "type", "veth", "peer", "name", "bulk1")
    sh("ip", "link", "set", "bulk1", "netns", LINUX_NS)
    sh("ip", "addr", "add", "10.9.1.1/24", "dev", "bulk0")
    sh("ip", "link", "set", "bulk0", "up")
    sh("ip", "netns", "exec", LINUX_NS, "ip", "addr", "add", "10.9.1.2/24", "dev", "bulk1")
    sh("ip", "netns", "exec", LINUX_NS, "ip", "link", "set", "bulk1", "up")


def veth_down():
    subprocess.run(["ip", "link", "del", "bulk0"], capture_output=True)
    subprocess.run(["ip", "netns", "del", LINUX_NS], capture_output=True)


def xcpu_rtt_ns():
    """Cache-line round trip between the two CPUs (xcpu_probe.c), or None
    if the probe is not built or cannot run."""
    try:
        out = subprocess.run([XCPU_PROBE], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return int(out.stdout) if out.returncode == 0 and out.stdout.strip().isdigit() else None


def busy_ticks():
    """Clock ticks all CPUs spent in processes (user, nice, system): the
    kernel's softirq time (Linux's TCP over the veth) is charged to no
    process, so it is left out on both sides of the difference."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2]


def process_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children_ticks():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (ru.ru_utime + ru.ru_stime) * os.sysconf("SC_CLK_TCK")


def probed(run, pids=()):
    """run() bracketed by two cross-CPU probes: (run's result, (before,
    after), others), others the percent of one CPU that processes not ours
    (not the daemons `pids`, not our finished children: iperf3) kept busy
    meanwhile.  Other engineers' tests share these two CPUs and are not
    under the bench lock: a run they took half a CPU from is not comparable."""
    before = xcpu_rtt_ns()
    t0, b0, c0 = time.monotonic(), busy_ticks(), children_ticks()
    d0 = sum(process_ticks(p) for p in pids)
    result = run()
    ours = children_ticks() - c0 + sum(process_ticks(p) for p in pids) - d0
    others = max(0.0, (busy_ticks() - b0 - ours) / os.sysconf("SC_CLK_TCK")
                 / (time.monotonic() - t0) * 100)
    return result, (before, xcpu_rtt_ns()), others


def placement(rtts):
    """near, far, or mixed (the CPUs moved during the run, or no probe)."""
    if None in rtts:
        return "mixed"
    if all(r < FAR_NS for r in rtts):
        return "near"
    if all(r >= FAR_NS for r in rtts):
        return "far"
    return "mixed"


def cpu_us(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_US


REVERSE = []      # ["-R"] with --reverse: the server sends


def iperf(server_env, client_prefix, client_env, host, port, streams, seconds):
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port), "--forceflush"],
                           env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        line = srv.stdout.readline()
        while line and "listening" not in line:
            line = srv.stdout.readline()
        out = subprocess.run([*client_prefix, "iperf3", "-c", host, "-p", str(port), "-t",
                              str(seconds), "-P", str(streams), "-J", *REVERSE], env=client_env,
                             capture_output=True, text=True, timeout=seconds * 10 + 60)
        srv.wait(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    r = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "sum_received" not in r.get("end", {}):
        raise RuntimeError(f"iperf3 failed (rc {out.returncode}): "
                           f"{r.get('error', out.stderr or out.stdout[-500:])}")
    return r["end"]["sum_received"]["bytes"] / r["end"]["sum_received"]["seconds"] / 1e6


def measured(daemon, run):
    """run() under the server daemon's counters: (MB/s, per-segment figures)."""
    c0, t0 = stats.read("tas", daemon.instance), cpu_us(daemon.proc.pid)
    y0 = stats.read("tascyc", daemon.instance)
    mbs = run()
    c1, t1 = stats.read("tas", daemon.instance), cpu_us(daemon.proc.pid)
    y1 = stats.read("tascyc", daemon.instance)
    stages = cycles.breakdown(cycles.delta(y1, y0), cycles.delta(c1, c0))
    d = {k: c1[k] - c0[k] for k in ("tcp_rx_segs", "tcp_tx_segs", "tcp_acks_sent",
                                    "tcp_rx_bytes", "rx_pkts", "tx_pkts")}
    segs = max(d["tcp_rx_segs"] + d["tcp_tx_segs"], 1)
    return mbs, {"cpu_us_per_seg": (t1 - t0) / segs,
                 "acks_per_rx_seg": d["tcp_acks_sent"] / max(d["tcp_rx_segs"], 1),
                 "bytes_per_rx_seg": d["tcp_rx_bytes"] / max(d["tcp_rx_segs"], 1),
                 "pkts": d["rx_pkts"] + d["tx_pkts"],
                 "cycles": {st: {"cycles": cyc, "units": n, "per_unit": round(per, 1),
                                 "unit": unit} for st, cyc, n, per, unit in stages}}


def run_config(tmp, name, devices, dpdk, base, streams, seconds):
    """One configuration's runs, with only its own daemons alive: idle
    daemons of the other rows still wake every few hundred microseconds
    (net_af_packet has no RX interrupt), and on two CPUs that took a third
    off one-stream TAS to TAS.  Ports from base.  Yields (streams, MB/s,
    per-segment figures, cross-CPU round trips before and after, others'
    CPU percent)."""
    if name == "linux-linux":
        for k, n in enumerate(streams):
            mbs, rtts, others = probed(lambda: iperf(None, ["ip", "netns", "exec", LINUX_NS],
                                                     None, "10.9.1.1", base + k, n, seconds))
            yield n, mbs, {}, rtts, others
        return
    if name == "tas-tas":
        daemons = start_memif_pair(tmp, extra=dpdk, pin_apps=True)
        server, client_prefix, client_env, host = daemons[0], [], environ("benchb"), "10.1.0.1"
    else:
        i = devices.index(name.split()[1])
        # the Linux sender's ACK processing on the apps' CPU, not the fast path's
        server = start_kernel_peer(tmp, devices[i], extra=dpdk, index=i, steer_rx=True)
        daemons = [server]
        client_prefix, client_env, host = ["ip", "netns", "exec", server.netns], None, "10.0.0.2"
    try:
        for k, n in enumerate(streams):
            (mbs, per), rtts, others = probed(lambda: measured(
                server, lambda: iperf(environ(server.instance), client_prefix, client_env,
                                      host, base + k, n, seconds)),
                pids=[d.proc.pid for d in daemons])
            yield n, mbs, per, rtts, others
    finally:
        for d in daemons:
            if d.netns:
                stop_kernel_peer(d)
            else:
                d.stop()


def print_by_placement(results, configs, streams):
    """The rows again, split by where the two CPUs were: min/median/max and
    the ratio of each row's min and median to linux-linux's median on the
    same placement."""
    rows = []
    for where in ("near", "far", "mixed"):
        for n in streams:
            def vals(name):
                return [(m, o) for m, _, rr, o in results[(name, n)] if placement(rr) == where]
            lin = [m for m, _ in vals("linux-linux")]
            linux = statistics.median(lin) if lin else None
            for name in configs:
                v = [m for m, _ in vals(name)]
                if not v:
                    continue
                med = statistics.median(v)
                rows.append([where, name, n, len(v), f"{min(v):.0f}", f"{med:.0f}",
                             f"{max(v):.0f}", f"{min(v) / linux:.2f}" if linux else "-",
                             f"{med / linux:.2f}" if linux else "-",
                             f"{max(o for _, o in vals(name)):.0f}"])
    print()
    print(f"by CPU placement (cross-CPU round trip: near < {FAR_NS} ns <= far)")
    print_table(["CPUs", "config", "streams", "runs", "min MB/s", "median", "max",
                 "min x linux", "median x linux", "others' CPU % (max)"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--streams", default="1,4")
    ap.add_argument("--mtu", type=int, default=1500, help="dpdk.mtu of the daemons (and veth)")
    ap.add_argument("--cc", default=None, help="cc.algorithm of the daemons (default: config)")
    ap.add_argument("--buf", default="1M",
                    help="buffers.rx_buf and tx_buf of the TAS daemons (default 1M; with "
                         "the config's 256K one memif stream reached 7.1-7.6 GB/s, with 1M "
                         "10.4-10.8, with 2M 9.3-9.8 but four streams 6.3-7.7 against "
                         "9.8 with 1M: their buffers outgrow the caches; Linux autotunes "
                         "its own up to 32 MiB here)")
    ap.add_argument("--devices", default="net_af_packet,net_tap",
                    help="devices of the tas-linux daemons, comma-separated")
    ap.add_argument("--reverse", action="store_true",
                    help="the iperf3 server sends (-R): TAS to Linux on the tas-linux rows")
    ap.add_argument("--no-memif", action="store_true", help="leave the tas-tas row out")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    devices = args.devices.split(",")
    if args.reverse:
        REVERSE.append("-R")
    configs = ([] if args.no_memif else ["tas-tas"]) + \
        [f"tas-linux {dev}" for dev in devices] + ["linux-linux"]
    dpdk = (f'mtu = {args.mtu}\n[buffers]\nrx_buf = "{args.buf}"\ntx_buf = "{args.buf}"' +
            (f'\n[cc]\nalgorithm = "{args.cc}"' if args.cc else ""))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        veth_up()
        sh("ip", "link", "set", "bulk0", "mtu", str(args.mtu))
        sh("ip", "netns", "exec", LINUX_NS, "ip", "link", "set", "bulk1", "mtu", str(args.mtu))
        try:
            for rep in range(args.repeat):
                for ci, name in enumerate(configs):
                    base = 5401 + 100 * rep + 10 * ci
                    for n, mbs, per, rtts, others in run_config(tmp, name, devices, dpdk,
                                                                base, streams, args.seconds):
                        results.setdefault((name, n), []).append((mbs, per, rtts, others))
                        print(f"  rep {rep} {name} x{n}: {mbs:.0f} MB/s "
                              f"(others' CPU {others:.0f}%, cross-CPU round trip "
                              f"{rtts[0]}/{rtts[1]} ns)", flush=True)
        finally:
            veth_down()
    rows, points = [], []
    for n in streams:
        linux = statistics.median(m for m, _, _, _ in results[("linux-linux", n)])
        for name in configs:
            vals = [m for m, _, _, _ in results[(name, n)]]
            per = results[(name, n)][-1][1]
            med = statistics.median(vals)
            points.append({"config": name, "streams": n, "mb_s": vals, "median": med,
                           "ratio_to_linux": med / linux if linux else None,
                           "xcpu_rtt_ns": [rr for _, _, rr, _ in results[(name, n)]],
                           "others_cpu_pct": [round(o, 1) for _, _, _, o in results[(name, n)]],
                           "placement": [placement(rr)
                                         for _, _, rr, _ in results[(name, n)]], **per})
            rows.append([name, n, f"{min(vals):.0f}", f"{med:.0f}", f"{max(vals):.0f}",
                         f"{med / linux:.2f}" if linux else "-",
                         f"{per['cpu_us_per_seg']:.2f}" if per else "-",
                         f"{per['acks_per_rx_seg']:.2f}" if per else "-",
                         f"{per['bytes_per_rx_seg']:.0f}" if per else "-"])
    print()
    print_table(["config", "streams", "min MB/s", "median", "max", "x linux",
                 "daemon cpu us/seg", "acks/rx seg", "bytes/rx seg"], rows)
    print_by_placement(results, configs, streams)
    # where the server daemon's fast-path cycles went (last repetition)
    crows = []
    for n in streams:
        for name in configs[:-1]:
            per = results[(name, n)][-1][1]
            crows.append([name, n] + [f"{per['cycles'][st]['per_unit']:.0f}"
                                      for st, _, _ in cycles.STAGES])
    print()
    print("server daemon fast-path cycles per unit (rx pkt, ack, notification, tx segment, "
          "tx pkt, command batch, pkt)")
    print_table(["config", "streams"] + [st for st, _, _ in cycles.STAGES], crows)
    write_json("tas_bulk.json", {"seconds": args.seconds, "repeat": args.repeat,
                                 "mtu": args.mtu, "cc": args.cc, "buf": args.buf,
                                 "devices": devices, "reverse": args.reverse,
                                 "loadavg": os.getloadavg(), "points": points})


if __name__ == "__main__":
    main()
