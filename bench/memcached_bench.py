"""memcached (multi-threaded) on TAS against Linux, in one run.

  python bench/memcached_bench.py [--ops N] [--concurrency C] [--repeat R]

The same unmodified memcached (`-t 2`: an accept thread and two workers,
each in its own epoll): under `tas-run` on a TAS daemon, and on the kernel
in a namespace a veth away.  From the daemon's peer namespace: memcslap
SETs (C connections, N each) for throughput, then one Python client's
SET round trips for latency (p50/p90/p99).  Best of --repeat, interleaved.
Prints a table with the ratio to Linux and libtas's `wakeups_late`; writes
bench/results/memcached_bench.json.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from deploy.report import print_table, write_json  # noqa: E402
from tas_benchlib import daemon_and_linux_host  # noqa: E402

PORT = 11500
LINUX_IP = "10.0.2.2"

LATENCY = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for i in range(int(sys.argv[3])):
    t = time.perf_counter()
    s.sendall(b"set k%d 0 0 10\r\n0123456789\r\n" % i)
    r = b""
    while not r.endswith(b"\r\n"):
        r += s.recv(100)
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(json.dumps({p: lat[int(len(lat) * p / 100)] for p in (50, 90, 99)}))
"""


def ns_run(ns, *cmd, timeout=600):
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]}: {r.stdout}{r.stderr}")
    return r.stdout


def memcslap(ns, ip, ops, conc):
    out = ns_run(ns, "memcslap", f"--servers={ip}:{PORT}", f"--concurrency={conc}",
                 f"--execute-number={ops}")
    secs = float(re.search(r"Time to set\s+\d+ keys by\s+\d+ threads:\s+([\d.]+)", out).group(1))
    return ops * conc / secs


def wait_up(ns, ip):
    probe = f"import socket; socket.create_connection(('{ip}', {PORT}))"
    for _ in range(100):
        if subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"memcached on {ip} did not come up")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20000, help="SETs per memcslap connection")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency-ops", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    res = {"linux": {}, "tas": {}}
    late = None
    with tempfile.TemporaryDirectory() as tmp, \
            daemon_and_linux_host(tmp, LINUX_IP, "[cc]\nalgorithm = \"none\"\n") as (d, lns):
        mc = ["memcached", "-u", "nobody", "-p", str(PORT), "-U", "0", "-t", "2",
              "-l", "0.0.0.0"]
        tas = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance,
                                "--", *mc], cwd=ROOT)
        procs = [tas, subprocess.Popen(["ip", "netns", "exec", lns, *mc])]
        try:
            ips = {"tas": "10.0.0.2", "linux": LINUX_IP}
            for ip in ips.values():
                wait_up(d.netns, ip)
            for _ in range(args.repeat):
                for stack in ("linux", "tas"):
                    ops = memcslap(d.netns, ips[stack], args.ops, args.concurrency)
                    lat = json.loads(ns_run(d.netns, sys.executable, "-c", LATENCY,
                                            ips[stack], str(PORT), str(args.latency_ops)))
                    r = res[stack]
                    r["sets_per_s"] = max(ops, r.get("sets_per_s", 0.0))
                    for p, v in lat.items():
                        r[f"p{p}_us"] = min(v, r.get(f"p{p}_us", float("inf")))
            from bindings import stats
            late = stats.read("libtas", str(tas.pid)).get("wakeups_late")
        finally:
            for p in procs:
                p.kill()
                p.wait()
    lin, tas = res["linux"], res["tas"]
    rows = [[s, f"{r['sets_per_s']:.0f}", f"{r['p50_us']:.0f}", f"{r['p90_us']:.0f}",
             f"{r['p99_us']:.0f}", f"{r['sets_per_s'] / lin['sets_per_s']:.2f}"]
            for s, r in (("linux", lin), ("tas", tas))]
    print_table(["stack", "SET/s (memcslap)", "p50 us", "p90 us", "p99 us", "vs linux"], rows)
    print(f"libtas wakeups_late: {late}")
    write_json("memcached_bench.json", {"args": vars(args), "results": res,
                                        "ratio": tas["sets_per_s"] / lin["sets_per_s"],
                                        "wakeups_late": late})


if __name__ == "__main__":
    main()
