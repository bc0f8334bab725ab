"""Strata sync-write benchmark: one command, one table, one JSON file.

  python bench/strata_fsync.py [--quick]

4 KiB and 64 B append+fsync on Strata (emulated NVM in /dev/shm), on the
machine's disk file system with fsync (/var/tmp), and on tmpfs; then 4 KiB
log-append bandwidth against raw pmem_memcpy_persist; then 4 KiB append+fsync
on a pool with the default 8 MiB logs with the background digest thread and
without it (STRATA_DIGEST_THREAD=0: the writer digests itself at 30 % log
fill): p50, p99, p99.9 and max, and their ratios; then digest time per
write (4 KiB, 64 KiB, 256 KiB appends, as an AOF grows) against one
persistent copy of the same bytes; then unlinking a 128 MiB file (an AOF
rewrite drops the old file) against tmpfs's unlink of the same bytes.  Ratios come from the same run.  The measurement loops are C (build/bench/strata_bench).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench", "strata_bench")
POOL = "/dev/shm/strata-bench.pool"
POOL_8M = "/dev/shm/strata-bench-8m.pool"
TRIALS = 5
DISK_DIR = "/var/tmp"
TMPFS_DIR = "/dev/shm"


def fstype(path):
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", path],
                         capture_output=True, text=True).stdout.splitlines()
    return " ".join(out[0].split()) if out else "unknown"


def run(*args, env=None):
    out = subprocess.run([BENCH, *map(str, args)], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def make_pool(lib, path, log_bytes):
    lib.check(lib.lib().strata_mkfs(path.encode(), 512 << 20, 4, log_bytes, 1024), "mkfs")
    # back every page, as a DAX device is (`strata mkfs --prealloc`: zeroed
    # now, in 2 MiB pages where /dev/shm allows): the pool file is sparse
    # otherwise and page allocation would be measured too
    from strata.cli import prealloc
    prealloc(path)


STATS = ("p50_us", "p99_us", "p999_us", "max_us", "ops_per_s")


def digest_thread_compare(lib, n, trials, gap_us):
    """4 KiB append+fsync with 8 MiB logs (a digest every ~600 appends),
    without and with the digest thread, alternating trials; medians.
    gap_us: the program's work between appends (0: a tight loop)."""
    make_pool(lib, POOL_8M, 8 << 20)
    runs = {"writer_digests": [], "digest_thread": []}
    try:
        for _ in range(trials):
            for name, flag in (("writer_digests", "0"), ("digest_thread", "1")):
                env = dict(os.environ, STRATA_DIGEST_THREAD=flag)
                runs[name].append(run("fsync", "strata", POOL_8M, 4096, n, gap_us, env=env))
    finally:
        os.unlink(POOL_8M)
    out = {name: {k: statistics.median(r[k] for r in rs) for k in STATS} for name, rs in runs.items()}
    for k in STATS:
        out[f"{k}_writer_over_thread"] = out["writer_digests"][k] / out["digest_thread"][k]
    out["trials"], out["n_per_trial"], out["gap_us"], out["per_trial"] = trials, n, gap_us, runs
    return out


def print_digest_thread(dt):
    print(f"4 KiB append+fsync, 8 MiB logs, {dt['gap_us']:g} us of other work between appends; "
          f"medians of {dt['trials']} alternating trials of {dt['n_per_trial']} (a digest every ~600 appends):")
    print(f"{'digest by':<22}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>11}{'max us':>11}{'ops/s':>12}")
    for name in ("writer_digests", "digest_thread"):
        r = dt[name]
        print(f"{name:<22}{r['p50_us']:>10.2f}{r['p99_us']:>10.2f}{r['p999_us']:>11.2f}"
              f"{r['max_us']:>11.1f}{r['ops_per_s']:>12,.0f}")
    print(f"{'writer / thread':<22}" + "".join(
        f"{dt[k + '_writer_over_thread']:>{w}.2f}x" for k, w in
        (("p50_us", 9), ("p99_us", 9), ("p999_us", 10), ("max_us", 10), ("ops_per_s", 11))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    a = ap.parse_args()
    if not os.path.exists(BENCH):
        sys.exit(f"{BENCH} missing: run `python deploy/native_build.py`")
    n_fast, n_disk, n_bw = (2000, 100, 5000) if a.quick else (20000, 400, 30000)
    n_dt = 5000 if a.quick else 50000
    sys.path.insert(0, ROOT)
    from strata import api as lib
    make_pool(lib, POOL, 64 << 20)
    rows, results = [], {"date": datetime.datetime.utcnow().isoformat() + "Z",
                         "disk_fs": f"{DISK_DIR} ({fstype(DISK_DIR)})",
                         "tmpfs": f"{TMPFS_DIR} ({fstype(TMPFS_DIR)})",
                         "pool": POOL, "fsync": {}}
    try:
        for size in (4096, 64):
            cases = [("strata", run("fsync", "strata", POOL, size, n_fast)),
                     ("disk+fsync", run("fsync", "kernel", f"{DISK_DIR}/strata-bench.dat", size, n_disk)),
                     ("tmpfs+fsync", run("fsync", "kernel", f"{TMPFS_DIR}/strata-bench.dat", size, n_fast))]
            base = cases[0][1]["p50_us"]
            for name, r in cases:
                r["p50_vs_strata"] = r["p50_us"] / base
                results["fsync"][f"{name}_{size}"] = r
                rows.append((f"{size} B append+fsync", name, r["p50_us"], r["p99_us"], r["ops_per_s"],
                             r["p50_vs_strata"]))
        # the CPU is shared: alternate raw and log trials, report medians
        raws, logs = [], []
        for _ in range(TRIALS):
            raws.append(run("bw", "raw", f"{TMPFS_DIR}/strata-bench-raw.dat", n_bw))
            logs.append(run("bw", "strata", POOL, n_bw))
        raw_gbps = statistics.median(r["raw_gbps"] for r in raws)
        log_gbps = statistics.median(r["append_gbps"] for r in logs)
        results["bandwidth_4k"] = {
            "trials": TRIALS, "raw_pmem_memcpy_persist_gbps": raw_gbps, "log_append_gbps": log_gbps,
            "log_append_with_digest_gbps": statistics.median(r["sustained_gbps"] for r in logs),
            "append_vs_raw": log_gbps / raw_gbps,
            "append_vs_raw_per_trial": [lg["append_gbps"] / r["raw_gbps"] for r, lg in zip(raws, logs)],
            "mapping_is_pmem": raws[0]["is_pmem"]}
        # digest's fixed cost per block shows against the copy it must do
        results["digest"] = []
        for size, n in ((4096, 2000), (65536, 200), (262144, 50)):
            runs = [run("digest", POOL, size, n, env=dict(os.environ, STRATA_DIGEST_THREAD="0"))
                    for _ in range(TRIALS)]
            results["digest"].append({k: statistics.median(r[k] for r in runs) for k in
                                      ("size", "digest_us_per_write", "copy_us_per_write",
                                       "digest_over_copy")})
        frees = [run("free", POOL, f"{TMPFS_DIR}/strata-bench-free.dat", 128)
                 for _ in range(TRIALS)]
        results["free_128m"] = {k: statistics.median(r[k] for r in frees) for k in
                                ("strata_ms", "kernel_ms", "strata_over_kernel")}
    finally:
        os.unlink(POOL)
    results["digest_thread_4k"] = [digest_thread_compare(lib, n_dt, 3, gap) for gap in (0, 5)]
    print(f"disk fs: {results['disk_fs']}   tmpfs: {results['tmpfs']}   "
          f"pool: {POOL} (real pmem: {'yes' if results['bandwidth_4k']['mapping_is_pmem'] else 'no'})")
    print(f"{'workload':<22}{'target':<14}{'p50 us':>10}{'p99 us':>10}{'ops/s':>12}{'p50 / strata':>14}")
    for w, t, p50, p99, ops, ratio in rows:
        print(f"{w:<22}{t:<14}{p50:>10.2f}{p99:>10.2f}{ops:>12,.0f}{ratio:>13.1f}x")
    bw = results["bandwidth_4k"]
    print(f"4 KiB bandwidth (median of {TRIALS} alternating trials): raw pmem_memcpy_persist "
          f"{bw['raw_pmem_memcpy_persist_gbps']:.2f} GB/s, log append {bw['log_append_gbps']:.2f} GB/s "
          f"({bw['append_vs_raw']:.0%} of raw; per trial "
          f"{', '.join(f'{x:.0%}' for x in bw['append_vs_raw_per_trial'])}), "
          f"log append incl. digest {bw['log_append_with_digest_gbps']:.2f} GB/s")
    for dt in results["digest_thread_4k"]:
        print_digest_thread(dt)
    print(f"digest per write (medians of {TRIALS}): size, digest us, persistent copy us, ratio")
    for d in results["digest"]:
        print(f"{d['size']:>10,} B{d['digest_us_per_write']:>10.2f}{d['copy_us_per_write']:>10.2f}"
              f"{d['digest_over_copy']:>9.2f}x")
    fr = results["free_128m"]
    print(f"unlink of a 128 MiB file (medians of {TRIALS}): Strata {fr['strata_ms']:.1f} ms "
          f"(digest included), tmpfs {fr['kernel_ms']:.1f} ms, {fr['strata_over_kernel']:.2f}x")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", "strata_fsync.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
