"""TAS RPC echo benchmark: one command, one table, one JSON file.

  python bench/tas_rpc.py [--duration S] [--sizes 64,2048] [--conns 1,8,64]

Closed-loop RPC echo (one request in flight per connection) by the same
unmodified C program, bench/rpc_echo.c (POSIX sockets + epoll), on both
stacks:
  tas:   two TAS daemons joined by net_memif, the server under `tas-run` on
         one and the client under `tas-run` on the other (libtas), each
         daemon with one fast-path lcore;
  linux: the same binary on the kernel's TCP over loopback.
Both runs share this machine's cores.  Reports requests/s and p50/p99
latency, and the TAS/Linux throughput ratio per point.
Target (issue 5): >= 2x Linux throughput at 64 B and a lower p99.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from deploy.report import print_table, write_json  # noqa: E402
from tas.run import environ  # noqa: E402
from tas_benchlib import start_memif_pair  # noqa: E402

RPC_ECHO = os.path.join(ROOT, "build", "bench", "rpc_echo")
PORT = 7000


def run_point(server_ip, port, size, conns, duration, warmup, server_env=None,
              client_env=None):
    """Start an echo server, run the client once, stop the server."""
    srv = subprocess.Popen([RPC_ECHO, "server", str(port)], env=server_env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"echo server did not start: {srv.stderr.read()}")
        out = subprocess.run([RPC_ECHO, "client", server_ip, str(port), str(size), str(conns),
                              str(warmup), str(duration)], env=client_env,
                             capture_output=True, text=True, timeout=120 + duration)
        if out.returncode != 0:
            raise RuntimeError(f"echo client failed: {out.stderr.strip()}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        srv.terminate()
        srv.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per point")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--sizes", default="64,2048")
    ap.add_argument("--conns", default="1,8,64")
    ap.add_argument("--idle-block-us", type=int, default=10000,
                    help="fast-path idle time before blocking")
    ap.add_argument("--no-yield", action="store_true",
                    help="fast paths spin without sched_yield() when idle")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    conns = [int(x) for x in args.conns.split(",")]
    if not os.path.exists(RPC_ECHO):
        sys.exit(f"{RPC_ECHO} is not built (python deploy/native_build.py)")
    rows, points = [], []
    with tempfile.TemporaryDirectory() as tmp:
        daemons = start_memif_pair(tmp, args.idle_block_us, not args.no_yield)
        try:
            for size in sizes:
                for c in conns:
                    t = run_point("10.1.0.1", PORT, size, c, args.duration, args.warmup,
                                  environ("bencha"), environ("benchb"))
                    lx = run_point("127.0.0.1", PORT + 1, size, c, args.duration, args.warmup)
                    ratio = t["rps"] / lx["rps"] if lx["rps"] else 0.0
                    points.append({"size": size, "conns": c, "tas": t, "linux": lx,
                                   "throughput_ratio": ratio})
                    rows.append([size, c, f"{t['rps']:.0f}", f"{lx['rps']:.0f}", f"{ratio:.2f}",
                                 f"{t['p50_us']:.0f}", f"{lx['p50_us']:.0f}",
                                 f"{t['p99_us']:.0f}", f"{lx['p99_us']:.0f}"])
        finally:
            for d in daemons:
                d.stop()
    print_table(["bytes", "conns", "tas rps", "linux rps", "tas/linux", "tas p50us",
                 "linux p50us", "tas p99us", "linux p99us"], rows)
    write_json("tas_rpc.json", {"duration_s": args.duration, "app": "bench/rpc_echo.c",
                                "idle_block_us": args.idle_block_us,
                                "yield_when_idle": not args.no_yield, "points": points})


if __name__ == "__main__":
    main()
