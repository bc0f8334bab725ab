"""ORP Redis benchmark: one command, one table, one JSON file.

  python bench/orp_redis.py [--sizes 65536,262144,524288,1048576] [--repeat 3]
                            [--keyspaces 1,1000] [--configs a,a2,b,c,d] [--quick]

Unmodified redis-server with AOF `appendfsync always`, driven by
redis-benchmark SET (16 connections) from a kernel client in another network
namespace.  Configurations, interleaved point by point, best of --repeat:
  a   Linux TCP + ext4       (the AOF on this machine's disk)
  a2  Linux TCP + Strata     (strata run)
  b   TAS + Strata           (kbrun --no-zio, receive buffers in shm)
  c   TAS + zIO + Strata     (kbrun, receive buffers in shm)
  d   ORP                    (kbrun --orp: receive buffers in the Strata pool)
Each point gets a fresh Strata pool (and daemon).  Reported per point: SET/s,
its ratio to a, a2 and b, and per SET: server CPU microseconds (redis-server)
and daemon CPU microseconds (TAS rows), large copies of the value (zIO's
plain copies and fills, Strata's inline log entries of 16 KiB or more),
bytes Strata logged inline, bytes it logged as references, bytes zIO filled
at release.
"""
import argparse
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bindings import stats  # noqa: E402
from deploy.report import print_table, write_json  # noqa: E402
from strata.cli import parse_size  # noqa: E402
from tas.launcher import DaemonProcess  # noqa: E402

CLIENTS = 16
PORT = 6390
REF_SIZE = "512M"     # the pool's ref area (the NVM payload arena of d)
NAMES = {"a": "Linux TCP + ext4", "a2": "Linux TCP + Strata", "b": "TAS + Strata",
         "c": "TAS + zIO + Strata", "d": "ORP (TAS + zIO + Strata, NVM rings)"}
LINUX_NS, LINUX_SRV, LINUX_CLI = "orpb-peer", "10.9.0.1", "10.9.0.2"
TAS_IP = "10.0.0.2"
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def linux_link():
    """A veth pair: root namespace 10.9.0.1, client namespace 10.9.0.2."""
    linux_unlink()
    sh("ip", "netns", "add", LINUX_NS)
    sh("ip", "link", "add", "orpb0", "type", "veth", "peer", "name", "orpb1")
    sh("ip", "link", "set", "orpb1", "netns", LINUX_NS)
    sh("ip", "addr", "add", f"{LINUX_SRV}/24", "dev", "orpb0")
    sh("ip", "link", "set", "orpb0", "up")
    sh("ip", "netns", "exec", LINUX_NS, "ip", "addr", "add", f"{LINUX_CLI}/24", "dev", "orpb1")
    sh("ip", "netns", "exec", LINUX_NS, "ip", "link", "set", "orpb1", "up")
    sh("ip", "netns", "exec", LINUX_NS, "ip", "link", "set", "lo", "up")


def linux_unlink():
    subprocess.run(["ip", "link", "del", "orpb0"], capture_output=True)
    subprocess.run(["ip", "netns", "del", LINUX_NS], capture_output=True)


def make_pool(ref_size):
    path = f"/dev/shm/orp-bench-{uuid.uuid4().hex[:8]}.pool"
    strata = [sys.executable, "-m", "strata.cli", "--pool", path]
    # --prealloc: backed like an NVM device, so no row pays tmpfs's first-touch
    # page faults on the sparse pool (they were ~10% of a Strata row's CPU)
    # room for the ref area, the log and the AOF a run appends (single key:
    # it only grows, rewrites are off), at least 2 GiB
    size = f"{max(2048, parse_size(ref_size) // (1 << 20) + 64 + RUN_MIB * 5 // 4 + 256)}M"
    sh(*strata, "mkfs", "--size", size, "--log-size", "64M", "--ref-size", ref_size,
       "--slots", "8", "--prealloc", cwd=ROOT)
    sh(*strata, "run", "--", "mkdir", "-p", "/strata/redis", cwd=ROOT)
    return path


def write_config(tmp, inst, body):
    path = os.path.join(tmp, f"{inst}.toml")
    with open(path, "w") as f:
        f.write(body)
    return path


RX_BUF = None         # --rx-buf: buffers.rx_buf of the server's daemon (None: rx_for(size))
MTU = 1500            # --mtu: dpdk.mtu of the TAS daemons
RUN_MIB = 150         # --run-mib: bytes SET per run (MiB), unless --quick
PERF = None           # --perf: directory for perf profiles of the server
SYSCALLS = False      # --syscalls: count the server's system calls with perf stat
# what --syscalls counts: all of them, the kinds zIO's elision issues, and
# the waits of an idle server (how many depends on the load, not the work)
SYSCALL_EVENTS = ("raw_syscalls:sys_enter", "syscalls:sys_enter_ioctl",
                  "syscalls:sys_enter_mincore", "syscalls:sys_enter_madvise")
WAIT_EVENTS = ("syscalls:sys_enter_poll", "syscalls:sys_enter_ppoll",
               "syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_sched_yield",
               "syscalls:sys_enter_futex", "syscalls:sys_enter_nanosleep",
               "syscalls:sys_enter_clock_nanosleep")


def rx_for(size):
    """The server's receive ring for values of `size`: room for four values
    (ORP holds ring pages while the value's intermediates and undigested
    references need them; a ring of fewer values forces releases, which
    copy), at least 2 MiB.  Every TAS row gets the same ring."""
    if RX_BUF:
        return RX_BUF
    return f"{max(2, -(-4 * size // (1 << 20)))}M"


def buffers(pool, nvm, rx):
    # With nvm the app's segment is a slice of the pool's ref area (its size
    # is --ref-size at mkfs): room for the queues and 20 connections' RX + TX
    # rings, and the 512 MiB area for two such slices (a restart).
    mib = -(-parse_size(rx) * 20 // (16 << 20)) * 16 + 64 if nvm else 0
    segment = f'app_segment = "{max(64, mib)}M"\n' if nvm else ""
    segment += f'rx_buf = "{rx}"\n'
    return (f'[buffers]\nbacking = "{"nvm" if nvm else "shm"}"\n{segment}'
            f'[nvm]\npool_path = "{pool}"\n')


def start_daemons(tmp, pool, nvm, client, rx):
    """The server's daemon; with client "tas" also the client's daemon, the
    two joined by net_memif (each fast path on its own CPU).  Returns
    (server daemon, client daemon or None, server IP)."""
    inst = f"orpb{uuid.uuid4().hex[:6]}"
    if client == "kernel":
        path = write_config(tmp, inst, f'[tas]\ninstance = "{inst}"\nip = "{TAS_IP}"\n'
                            f'[dpdk]\niface = "{inst}"\nmem_mb = 256\nmbufs = 8191\nmtu = {MTU}\n'
                            f'[peer]\nnetns = "{inst}ns"\nip = "10.0.0.1"\n' + buffers(pool, nvm, rx))
        return DaemonProcess(path, inst, f"{inst}ns").start(), None, TAS_IP
    sock = os.path.join(tmp, f"{inst}.memif")
    made = []
    try:
        for name, role, ip, mac, main_core, fp_core in (
                (inst + "s", "server", "10.1.0.1", "02:00:00:00:01:01", 0, 1),
                (inst + "c", "client", "10.1.0.2", "02:00:00:00:01:02", 1, 0)):
            body = (f'[tas]\ninstance = "{name}"\nip = "{ip}"\nmac = "{mac}"\n'
                    f'[dpdk]\ndevice = "net_memif"\nmemif_role = "{role}"\n'
                    f'memif_socket = "{sock}"\nmem_mb = 256\nmbufs = 8191\nmtu = {MTU}\n'
                    f'main_core = {main_core}\nfp_cores = [{fp_core}]\n'
                    f'[peer]\nnetns = ""\nip = "10.1.0.254"\n')
            if role == "server":
                body += buffers(pool, nvm, rx)
            made.append(DaemonProcess(write_config(tmp, name, body), name, None).start())
    except BaseException:
        for d in made:
            d.stop()
        raise
    return made[0], made[1], "10.1.0.1"


def cpu_us(pid):
    """utime + stime of a process (all its threads) in microseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_US


def counters(component, pid):
    try:
        return stats.read(component, str(pid))
    except stats.StatsError:
        return {}


def syscall_counter(pid, path):
    """perf stat counting the server's system calls (all its threads, also
    those started later) into path until SIGINT."""
    return subprocess.Popen(["perf", "stat", "-x", ",", "-o", path, "-p", str(pid),
                             "-e", ",".join(SYSCALL_EVENTS + WAIT_EVENTS)])


def syscalls_per_set(proc, path, n):
    """Stop syscall_counter() and return {event: calls per SET}, with
    "waits" (all the WAIT_EVENTS) and "work" (all but the waits)."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    out, waits = {}, 0
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[0].isdigit():
                if fields[2] in WAIT_EVENTS:
                    waits += int(fields[0])
                elif fields[2] in SYSCALL_EVENTS:
                    name = fields[2].split(":")[1]
                    out["all" if name == "sys_enter" else name[len("sys_enter_"):]] = int(fields[0]) / n
    out["waits"] = waits / n
    out["work"] = out.get("all", 0) - out["waits"]
    return out


def redis_cmd(workdir):
    return ["redis-server", "--port", str(PORT), "--protected-mode", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", workdir,
            "--auto-aof-rewrite-percentage", "0", "--daemonize", "no"]


def server_cmd(cfg, pool, daemon, tmp):
    if cfg == "a":
        return redis_cmd(tmp) + ["--bind", LINUX_SRV]
    if cfg == "a2":
        return [sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--",
                *redis_cmd("/strata/redis"), "--bind", LINUX_SRV]
    kb = [sys.executable, "-m", "kb.run", "-i", daemon.instance]
    kb += {"b": ["--no-zio", "--pool", pool], "c": ["--pool", pool], "d": ["--orp"]}[cfg]
    return kb + ["--", *redis_cmd("/strata/redis")]


def requests_for(size, quick):
    mib = 60 if quick else RUN_MIB
    return max(100, int(mib * (1 << 20) // size))


def client_prefix(cfg, daemon, cdaemon):
    """How redis-benchmark reaches the server: from a kernel namespace, or
    under libtas on the client daemon."""
    if cfg in ("a", "a2"):
        return ["ip", "netns", "exec", LINUX_NS]
    if cdaemon is None:
        return ["ip", "netns", "exec", daemon.netns]
    return [sys.executable, "-m", "kb.run", "--no-zio", "--no-strata", "-i", cdaemon.instance, "--"]


def run_point(cfg, size, keyspace, quick, tmp, client):
    """One server, one redis-benchmark run: SET/s and per-SET costs."""
    pool = daemon = cdaemon = None
    work = tempfile.mkdtemp(prefix="orpb-", dir=tmp)
    try:
        if cfg != "a":
            pool = make_pool(REF_SIZE)
        if cfg in ("b", "c", "d"):
            daemon, cdaemon, tas_ip = start_daemons(tmp, pool, cfg == "d", client, rx_for(size))
        srv = subprocess.Popen(server_cmd(cfg, pool, daemon, work), cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = []
        for line in srv.stdout:
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise SystemExit(f"{cfg}: redis-server did not start:\n{''.join(seen[-20:])}")
        host = LINUX_SRV if cfg in ("a", "a2") else tas_ip
        n = requests_for(size, quick)
        bench = [*client_prefix(cfg, daemon, cdaemon), "redis-benchmark", "-h", host, "-p", str(PORT),
                 "-c", str(CLIENTS), "-n", str(n), "-d", str(size), "-t", "set", "--csv"]
        if keyspace > 1:
            bench += ["-r", str(keyspace)]
        prof = None
        if PERF:   # the server's profile while redis-benchmark runs
            os.makedirs(PERF, exist_ok=True)
            # system-wide: with -p perf never sees a thread started after it
            # attached (Strata's digest thread); perf report --pid picks the server
            prof = subprocess.Popen(["perf", "record", "-g", "-q", "-a", "-o",
                                     os.path.join(PERF, f"{cfg}-{size}-{client}.data")])
        sysc = None
        if SYSCALLS:
            sysc_path = os.path.join(work, "syscalls.csv")
            sysc = syscall_counter(srv.pid, sysc_path)
            time.sleep(0.5)   # perf attaches before the first request
        cpu0 = cpu_us(srv.pid)
        dcpu0 = cpu_us(daemon.proc.pid) if daemon else 0
        out = subprocess.run(bench, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if out.returncode != 0:
            alive = srv.poll() is None
            srv.kill()
            tail = srv.stdout.read()[-3000:]
            raise SystemExit(f"{cfg}: redis-benchmark failed: {out.stderr}\n"
                             f"redis-server {'was running' if alive else f'exited {srv.returncode}'}"
                             f"; its last output:\n{tail}")
        if prof is not None:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=120)
        if sysc is not None:
            syscalls = syscalls_per_set(sysc, sysc_path, n)
        rate = [float(r[1]) for r in csv.reader(io.StringIO(out.stdout)) if r and r[0] == "SET"][0]
        res = {"sets_per_s": rate, "server_cpu_us": (cpu_us(srv.pid) - cpu0) / n,
               "daemon_cpu_us": ((cpu_us(daemon.proc.pid) - dcpu0) / n) if daemon else 0.0}
        z, s, lt = counters("zio", srv.pid), counters("strata", srv.pid), counters("libtas", srv.pid)
        # large copies of a value on the request path: zIO's plain copies and
        # fills, Strata's inline log entries of 16 KiB or more (as the test
        # tests/orp/test_orp_copies.py counts them)
        res["large_copies"] = ((z.get("bytes_plain_large", 0) + z.get("release_fill_bytes", 0)
                                + s.get("inline_large_bytes", 0)) / size / n) if z else None
        res["syscalls"] = syscalls if sysc is not None else None
        res["copies_elided"] = z.get("copies_elided", 0) / n if z else None
        res["fill_bytes"] = z.get("release_fill_bytes", 0) / n if z else None
        res["inline_bytes"] = s.get("inline_bytes", 0) / n if s else None
        res["ref_bytes"] = s.get("ref_bytes", 0) / n if s else None
        # every counter per SET, for the JSON (where a configuration's time goes)
        res["per_set"] = {comp: {k: v / n for k, v in c.items() if isinstance(v, (int, float)) and v}
                          for comp, c in (("zio", z), ("strata", s), ("libtas", lt)) if c}
        srv.terminate()
        srv.wait(timeout=120)
        return res
    finally:
        for d in (cdaemon, daemon):
            if d is not None:
                d.stop()
                if d.netns:
                    subprocess.run(["ip", "netns", "del", d.netns], capture_output=True)
        if pool is not None and os.path.exists(pool):
            os.unlink(pool)
        shutil.rmtree(work, ignore_errors=True)


def points_for(configs, clients):
    """(client, config) pairs: Linux rows once (kernel client), TAS rows per client."""
    out = [("kernel", c) for c in configs if c in ("a", "a2")]
    return out + [(cl, c) for cl in clients for c in configs if c not in ("a", "a2")]


def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="65536,262144,524288,1048576")
    ap.add_argument("--keyspaces", default="1,1000", help="1 = a single key; N = -r N")
    ap.add_argument("--configs", default="a,a2,b,c,d")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point, best kept")
    ap.add_argument("--clients", default="kernel,tas",
                    help="kernel: redis-benchmark in the daemon's peer namespace; tas: under "
                         "libtas on a second daemon over net_memif (TAS rows only)")
    ap.add_argument("--run-mib", type=int, default=150, help="MiB SET per run (default 150)")
    ap.add_argument("--perf", metavar="DIR",
                    help="record the whole machine with perf (-a -g) during each run into "
                         "DIR/<cfg>-<size>-<client>.data; perf report --pid/--tid picks the "
                         "server and its threads (Strata's digest thread too)")
    ap.add_argument("--syscalls", action="store_true",
                    help="count the server's system calls per SET with perf stat (all, ioctl, "
                         "mincore, madvise): a figure that does not depend on the machine's load")
    ap.add_argument("--quick", action="store_true", help="fewer requests per run (demo)")
    ap.add_argument("--rx-buf",
                    help="buffers.rx_buf of the server's daemon, for every TAS row (default: "
                         "four values, at least 2M: a receive ring of several values lets ORP "
                         "hold pages instead of forcing their release)")
    ap.add_argument("--mtu", type=int, default=1500,
                    help="dpdk.mtu of the TAS daemons (up to 9000: jumbo frames from the "
                         "kernel peer and over net_memif)")
    args = ap.parse_args()
    global RX_BUF, MTU, PERF, RUN_MIB, SYSCALLS
    RX_BUF, MTU, PERF, RUN_MIB = args.rx_buf, args.mtu, args.perf, args.run_mib
    SYSCALLS = args.syscalls
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in NAMES]
    if unknown:
        ap.error(f"--configs: unknown {unknown}; choose from {','.join(NAMES)}")
    clients = args.clients.split(",")
    if set(clients) - {"kernel", "tas"}:
        ap.error("--clients: kernel, tas or both")
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: {args.sizes!r}: byte sizes like 65536 or 256K, comma-separated")
    keyspaces = [int(k) for k in args.keyspaces.split(",")]
    best, runs = {}, {}
    linux_link()
    try:
        with tempfile.TemporaryDirectory(dir=ROOT) as tmp:   # on ext4 for row a
            for rep in range(args.repeat):
                for size in sizes:
                    for ks in keyspaces:
                        for client, cfg in points_for(configs, clients):   # interleaved
                            r = run_point(cfg, size, ks, args.quick, tmp, client)
                            key = (size, ks, client, cfg)
                            runs.setdefault(key, []).append(
                                {k: r[k] for k in ("sets_per_s", "server_cpu_us", "syscalls")})
                            if key not in best or r["sets_per_s"] > best[key]["sets_per_s"]:
                                best[key] = r
                            print(f"  rep {rep} {size >> 10} KiB keys={ks} {client} {cfg}: "
                                  f"{r['sets_per_s']:.0f} SET/s, server {r['server_cpu_us']:.0f} us/SET"
                                  + (f", {r['syscalls']['all']:.1f} syscalls/SET "
                                     f"({r['syscalls']['work']:.1f} not waiting)" if r["syscalls"] else ""),
                                  flush=True)
    finally:
        linux_unlink()
    rows, points = [], []
    for size in sizes:
        for ks in keyspaces:
            for client, cfg in points_for(configs, clients):
                # Linux rows always have the kernel client; TAS rows compare with them
                base = {c: best.get((size, ks, "kernel" if c != "b" else client, c), {})
                        .get("sets_per_s") for c in ("a", "a2", "b")}
                r = best[(size, ks, client, cfg)]
                ratio = {f"vs_{c}": (r["sets_per_s"] / v if v else None) for c, v in base.items()}
                points.append({"size": size, "keyspace": ks, "client": client, "config": cfg,
                               "name": NAMES[cfg], **r, **ratio,
                               "runs": runs[(size, ks, client, cfg)]})
                rows.append([f"{size >> 10}K", ks, client, cfg, f"{r['sets_per_s']:.0f}",
                             fmt(ratio["vs_a"], ".2f"), fmt(ratio["vs_a2"], ".2f"),
                             fmt(ratio["vs_b"], ".2f"), f"{r['server_cpu_us']:.0f}",
                             f"{r['daemon_cpu_us']:.0f}", fmt(r["large_copies"], ".2f"),
                             fmt(r["inline_bytes"]), fmt(r["ref_bytes"]), fmt(r["fill_bytes"]),
                             fmt((r["syscalls"] or {}).get("all"), ".1f"),
                             fmt((r["syscalls"] or {}).get("work"), ".1f")])
    print()
    for c in configs:
        print(f"  {c:>2} = {NAMES[c]}")
    print_table(["value", "keys", "client", "cfg", "SET/s", "x a", "x a2", "x b", "srv us/SET",
                 "tas us/SET", "large copies/SET", "inline B/SET", "ref B/SET", "fill B/SET",
                 "syscalls/SET", "not waiting"],
                rows)
    write_json("orp_redis.json", {"clients": CLIENTS, "repeat": args.repeat,
                                  "quick": args.quick, "rx_buf": RX_BUF or "4 values, >= 2M", "mtu": MTU,
                                  "load_avg": os.getloadavg(), "points": points})


if __name__ == "__main__":
    main()
