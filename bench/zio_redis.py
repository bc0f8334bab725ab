"""zIO Redis benchmark: one command, one table, one JSON file.

  python bench/zio_redis.py [--duration S] [--repeat N] [--sizes 16384,...] [--aof]

Unmodified redis-server, plainly and under `zio run`, measured with
redis-benchmark SET and GET (16 clients) over loopback.  With --aof the server
appends every write to an AOF in a temporary directory (appendfsync no), the
dissertation's Redis setup (network in, AOF out).  Target (issue 4): SET at
256 KiB >= 1.5x plain.
"""
import argparse
import csv
import io
import shutil
import subprocess
import tempfile

from zio_benchlib import free_port, launch, print_table, wait_port, write_json, zio_counters

CLIENTS = 16


def bench_server(size, zio, duration, aof, zio_opts=()):
    port = free_port()
    work = tempfile.mkdtemp(prefix="zio-redis-")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--dir", work, "--appendonly", "yes" if aof else "no", "--appendfsync", "no"]
    server = launch(cmd, zio, zio_opts, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        # requests for about `duration` seconds at a guessed 400 MB/s
        n = max(200, int(duration * 400e6 / size))
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(CLIENTS), "-n", str(n),
                              "-d", str(size), "-t", "set,get", "--csv", "-r", "1000"],
                             capture_output=True, text=True, timeout=duration * 20 + 120)
        if out.returncode != 0:
            raise SystemExit(f"redis-benchmark failed: {out.stderr}")
        rates = {row[0]: float(row[1]) for row in csv.reader(io.StringIO(out.stdout))
                 if row and row[0] in ("SET", "GET")}
        counters = zio_counters(server.pid) if zio else {}
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return rates, counters


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=1.5, help="rough seconds per test")
    ap.add_argument("--sizes", default="16384,65536,262144,524288")
    ap.add_argument("--aof", action="store_true", help="append-only file on (appendfsync no)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs per point, best kept (the machine is shared and noisy)")
    ap.add_argument("--zio-opt", action="append", default=[],
                    help="option passed to `zio run` (repeatable), e.g. --zio-opt=--skip-populated")
    args = ap.parse_args()
    rows, points = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        plain, zio, c = {"SET": 0, "GET": 0}, {"SET": 0, "GET": 0}, {}
        for _ in range(args.repeat):   # interleaved, best of N
            p, _ = bench_server(size, False, args.duration, args.aof)
            z, c = bench_server(size, True, args.duration, args.aof, args.zio_opt)
            plain = {op: max(plain[op], p[op]) for op in plain}
            zio = {op: max(zio[op], z[op]) for op in zio}
        for op in ("SET", "GET"):
            p = {"size": size, "op": op, "plain_rps": plain[op], "zio_rps": zio[op],
                 "zio_vs_plain": round(zio[op] / plain[op], 3),
                 "copies_elided": c.get("copies_elided", 0), "faults": c.get("faults_intermediate", 0)
                 + c.get("faults_original_write", 0)}
            points.append(p)
            rows.append([size, op, f"{plain[op]:.0f}", f"{zio[op]:.0f}", p["zio_vs_plain"],
                         p["copies_elided"], p["faults"]])
            print(f"  {size} {op}: plain {plain[op]:.0f}/s zio {zio[op]:.0f}/s", flush=True)
    print()
    print_table(["value size", "op", "plain req/s", "zio req/s", "zio/plain",
                 "copies elided", "faults"], rows)
    write_json("zio_redis_aof.json" if args.aof else "zio_redis.json",
               {"duration_s": args.duration, "repeat": args.repeat, "clients": CLIENTS,
                "zio_opts": args.zio_opt,
                "aof": args.aof,
                "points": points})


if __name__ == "__main__":
    main()
