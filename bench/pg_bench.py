"""PostgreSQL under pgbench: the whole stack against Linux, in one run.

  python bench/pg_bench.py [--seconds S] [--clients N] [--scale K] [--repeat R]

The same unmodified postgres (Debian's 15), as the postgres user, four ways:
  (a)  Linux TCP + ext4        in a namespace a veth away, data on ext4
  (a2) Linux TCP + Strata      the same, data on Strata (strata run --shared-writers)
  (b)  TAS + ext4              tas-run, data on ext4
  (d)  TAS + Strata            kbrun --shared-writers (libzio:libtas:libstrata)
pgbench (TPC-B-like, -n after one -i) from the TAS daemon's peer namespace
with the same client count for every row; configurations interleaved, best
of --repeat.  Prints transactions/s and the ratio to (a), writes
bench/results/pg_bench.json.
"""
import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from deploy.report import print_table, write_json  # noqa: E402
from pg_helpers import PG, as_postgres, start_postgres_cmd  # noqa: E402
from tas_benchlib import daemon_and_linux_host  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
LINUX_IP = "10.0.2.2"
ROWS = {"a": "Linux TCP + ext4", "a2": "Linux TCP + Strata", "b": "TAS + ext4",
        "d": "TAS + Strata (kbrun)"}
PORTS = {"a": 55501, "a2": 55502, "b": 55503, "d": 55504}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout}{r.stderr}")
    return r.stdout


def strata_cmd(pool, *argv):
    return [SYSTEM_PYTHON, "-m", "strata.cli", "--pool", pool, "run", "--shared-writers", "--",
            *argv]


def prepare(pool, ext4):
    """Two data directories: /strata/pg in the pool, and one on ext4."""
    run([sys.executable, "-m", "strata.cli", "--pool", pool, "mkfs", "--size", "4G",
         "--slots", "32"])
    os.chmod(pool, 0o666)
    run([sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--", "sh", "-c",
         "mkdir /strata/pg && chown postgres /strata/pg"])
    os.makedirs(ext4)
    shutil.chown(ext4, "postgres")
    for data, wrap in (("/strata/pg", lambda *a: strata_cmd(pool, *a)),
                       (ext4 + "/pg", lambda *a: list(a))):
        run(as_postgres(*wrap(f"{PG}/initdb", "-D", data, "-A", "trust")))
        run(as_postgres(*wrap("sh", "-c", f"echo 'host all all 10.0.0.0/8 trust' >> "
                                          f"{data}/pg_hba.conf")))


def server_cmd(row, d, lns, pool, ext4):
    data = "/strata/pg" if row in ("a2", "d") else ext4 + "/pg"
    pg = [f"{PG}/postgres", "-D", data, "-p", str(PORTS[row]), "-c", "listen_addresses=*",
          "-c", "unix_socket_directories="]
    if row == "a":
        return ["ip", "netns", "exec", lns, *as_postgres(*pg)]
    if row == "a2":
        return ["ip", "netns", "exec", lns, *as_postgres(*strata_cmd(pool, *pg))]
    if row == "b":
        return as_postgres(SYSTEM_PYTHON, "-m", "kb.run", "-i", d.instance, "--no-zio",
                           "--no-strata", "--", *pg)
    return as_postgres(SYSTEM_PYTHON, "-m", "kb.run", "-i", d.instance, "--pool", pool,
                       "--shared-writers", "--", *pg)


def stop(p):
    if p.poll() is None:
        p.terminate()       # smart shutdown: a checkpoint, as a real stop
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def pgbench(ns, ip, port, *args):
    out = run(["ip", "netns", "exec", ns, f"{PG}/pgbench", "-h", ip, "-p", str(port),
               "-U", "postgres", *args, "postgres"])
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if "-i" not in args and m is None:
        raise RuntimeError(f"pgbench: {out}")
    return float(m.group(1)) if m else None


def run_rows(args, d, lns, pool, ext4, servers, tps):
    """Every row, --repeat times, one server at a time: a and b share the ext4
    directory, a2 and d the Strata one (each initialised through the first
    stack that uses it).  Best transactions/s per row into tps."""
    prepare(pool, ext4)
    ip = {r: (LINUX_IP if r in ("a", "a2") else "10.0.0.2") for r in ROWS}
    initialised = set()
    for _ in range(args.repeat):
        for row in ROWS:
            servers[row] = start_postgres_cmd(server_cmd(row, d, lns, pool, ext4), ROOT)
            where = "strata" if row in ("a2", "d") else "ext4"
            if where not in initialised:
                pgbench(d.netns, ip[row], PORTS[row], "-i", "-s", str(args.scale))
                initialised.add(where)
            t = pgbench(d.netns, ip[row], PORTS[row], "-n", "-c", str(args.clients),
                        "-j", str(min(args.clients, 2)), "-T", str(args.seconds))
            tps[row] = max(t, tps.get(row, 0.0))
            stop(servers.pop(row))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    pwd.getpwnam("postgres")
    tps = {}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        pool = f"/dev/shm/pgbench-{uuid.uuid4().hex[:8]}.pool"
        ext4 = os.path.join(tmp, "ext4")
        servers = {}
        try:
            with daemon_and_linux_host(tmp, LINUX_IP, "[cc]\nalgorithm = \"none\"\n") \
                    as (d, lns):
                try:
                    run_rows(args, d, lns, pool, ext4, servers, tps)
                finally:       # before the daemon and the namespace go
                    for p in servers.values():
                        stop(p)
        finally:
            if os.path.exists(pool):
                os.unlink(pool)
    rows = [[k, ROWS[k], f"{tps[k]:.0f}", f"{tps[k] / tps['a']:.2f}"] for k in ROWS]
    print_table(["row", "stack", "tps", "vs (a)"], rows)
    write_json("pg_bench.json", {"seconds": args.seconds, "clients": args.clients,
                                 "scale": args.scale, "repeat": args.repeat,
                                 "tps": tps, "ratio_to_linux_ext4":
                                 {k: tps[k] / tps["a"] for k in ROWS}})


if __name__ == "__main__":
    main()
