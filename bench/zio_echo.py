"""zIO echo benchmark: one command, one table, one JSON file.

  python bench/zio_echo.py [--duration S] [--repeat N] [--sizes 4096,...] [--copies 0,1,2,3,4]

An echo server (bench/zio_echo.c) makes K application copies of each message
before echoing it; the client verifies every byte.  Each point runs plainly
and under `zio run`.  Ratios: zio vs plain at the same K, and zio vs the
plain K=0 ceiling at the same size.
Targets (issue 4): K=4 at 256 KiB and 1 MiB >= 90 % of the K=0 ceiling;
4-8 KiB at most 3 % slower than plain.
"""
import argparse
import subprocess

from zio_benchlib import built, free_port, launch, print_table, write_json, zio_counters


def run_point(size, k, zio, duration, zio_opts=()):
    port = free_port()
    server = launch([built("zio_echo"), "server", str(port), str(size), str(k)], zio, zio_opts,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "listening":   # it serves one connection
            raise SystemExit(f"echo server did not start (size {size}, K {k})")
        client = subprocess.run([built("zio_echo"), "client", str(port), str(size), str(duration)],
                                capture_output=True, text=True, timeout=duration + 60)
        if client.returncode != 0:
            raise SystemExit(f"client failed (size {size}, K {k}, zio {zio}): {client.stderr}")
        msgs, secs = client.stdout.split()
        counters = zio_counters(server.pid) if zio else {}
    finally:
        server.stdin.close()   # lets it exit normally (libzio removes its stats page)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    mbps = int(msgs) * size / float(secs) / 1e6
    return mbps, counters.get("copies_elided", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=0.7, help="seconds per run")
    ap.add_argument("--sizes", default="4096,8192,65536,262144,1048576")
    ap.add_argument("--copies", default="0,1,2,4")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per point, best kept (the machine is shared and noisy)")
    ap.add_argument("--zio-opt", action="append", default=[],
                    help="option passed to `zio run` (repeatable), e.g. --zio-opt=--skip-populated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ks = [int(k) for k in args.copies.split(",")]
    rows, results = [], []
    for size in sizes:
        ceiling = None
        for k in ks:
            plain = zio = elided = 0
            for _ in range(args.repeat):   # interleaved, best of N
                plain = max(plain, run_point(size, k, False, args.duration)[0])
                z, e = run_point(size, k, True, args.duration, args.zio_opt)
                zio, elided = max(zio, z), max(elided, e)
            if k == 0:
                ceiling = plain
            point = {"size": size, "copies": k, "plain_MBps": round(plain, 1),
                     "zio_MBps": round(zio, 1), "zio_vs_plain": round(zio / plain, 3),
                     "zio_vs_ceiling": round(zio / ceiling, 3) if ceiling else None,
                     "copies_elided": elided}
            results.append(point)
            rows.append([size, k, point["plain_MBps"], point["zio_MBps"], point["zio_vs_plain"],
                         point["zio_vs_ceiling"], elided])
            print(f"  size {size} K {k}: plain {plain:.0f} MB/s, zio {zio:.0f} MB/s", flush=True)
    print()
    print_table(["size", "K", "plain MB/s", "zio MB/s", "zio/plain", "zio/ceiling(K=0 plain)",
                 "copies elided"], rows)
    write_json("zio_echo.json", {"duration_s": args.duration, "repeat": args.repeat,
                                 "zio_opts": args.zio_opt,
                                 "points": results})


if __name__ == "__main__":
    main()
