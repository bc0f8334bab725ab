"""The TAS slow path's CPU per short connection, under churn.

  python bench/tas_conn_cpu.py [--seconds S] [--slots 4] [--runs 3] [--pyspy out.svg]

One daemon (the default device), bench/rpc_echo.c under `tas-run`, and
bench/conn_client.c in the peer namespace (`--slots` connections in flight,
connect, write 64 B, read the echo, close).  Over each measured window it
reads the daemon's threads' CPU time (/proc/<pid>/task/*/stat, utime +
stime) and divides by the connections the client completed: the slow path
is the daemon's main thread (EAL's main lcore), the fast path its lcore
thread.  CPU time per connection is about independent of the machine's
load, unlike the rate.  --pyspy: record the slow path with py-spy during
the last run (an SVG flame graph, or collapsed stacks); --perf: with perf
(where its C and kernel time goes; py-spy counts a thread waiting in
epoll as busy).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from deploy.report import print_table, write_json  # noqa: E402
from tasd import Daemon  # noqa: E402

RPC_ECHO = os.path.join(ROOT, "build", "bench", "rpc_echo")
CONN_CLIENT = os.path.join(ROOT, "build", "bench", "conn_client")
PORT = 7301
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{thread id: (name, CPU seconds)} of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue            # exited meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    return out


def counters(instance, page):
    from bindings import stats
    try:
        return stats.read(page, instance)
    except (OSError, stats.StatsError):
        return {}


def one_run(d, pid, seconds, slots, pyspy=None, perf=None):
    """Client rate and the daemon's CPU per connection over one window."""
    spy = None
    if perf:
        spy = subprocess.Popen(["perf", "record", "-q", "-t", str(pid), "-o", perf, "--",
                                "sleep", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif pyspy:
        spy = subprocess.Popen(["py-spy", "record", "-o", pyspy, "--pid", str(pid),
                                "--duration", str(int(seconds)), "--rate", "250",
                                "--nonblocking", "--format",
                                "flamegraph" if pyspy.endswith(".svg") else "raw"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c0, t0 = thread_cpu(pid), counters(d.instance, "tas")
    t0.update(counters(d.instance, "tassyn"))
    out = subprocess.run(["ip", "netns", "exec", d.netns, CONN_CLIENT, "10.0.0.2", str(PORT),
                          "64", str(slots), "0", str(seconds)],
                         check=True, capture_output=True, text=True, timeout=seconds + 60)
    c1, t1 = thread_cpu(pid), counters(d.instance, "tas")
    t1.update(counters(d.instance, "tassyn"))
    if spy is not None:
        spy.wait(timeout=120)
    r = json.loads(out.stdout)
    n = max(1, r["conns"])
    sp = c1.get(pid, ("", 0))[1] - c0.get(pid, ("", 0))[1]
    others = {}
    for tid, (name, cpu) in c1.items():
        if tid != pid:
            others[name] = others.get(name, 0.0) + cpu - c0.get(tid, (name, cpu))[1]
    delta = {k: v - t0.get(k, 0) for k, v in t1.items()
             if isinstance(v, (int, float)) and v - t0.get(k, 0)}
    return {"conns_per_s": r["conns_per_s"], "conns": r["conns"],
            "sp_us_per_conn": sp / n * 1e6, "sp_cpu_share": sp / seconds,
            "threads_us_per_conn": {k: v / n * 1e6 for k, v in others.items()},
            "counters_per_conn": {k: v / n for k, v in sorted(delta.items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pyspy", default=None, help="py-spy profile of the last run's slow path: an SVG flame "
                    "graph (.svg), else collapsed stacks")
    ap.add_argument("--perf", default=None,
                    help="`perf record` the slow path's thread during the last run into this file")
    ap.add_argument("--counters", action="store_true",
                    help="print the daemon's counters per connection (last run)")
    args = ap.parse_args()
    for prog in (RPC_ECHO, CONN_CLIENT):
        if not os.path.exists(prog):
            sys.exit(f"{prog} is not built (python deploy/native_build.py)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp), extra="[cc]\nalgorithm = \"none\"\n").start()
        server = None
        try:
            server = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance,
                                       "--", RPC_ECHO, "server", str(PORT)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if "listening" not in server.stdout.readline():
                raise RuntimeError("echo server did not start: " + server.stderr.read())
            for cmd in (["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"],
                        ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]):
                subprocess.run(["ip", "netns", "exec", d.netns] + cmd, check=True)
            one_run(d, d.proc.pid, 1, args.slots)          # warm up
            for i in range(args.runs):
                runs.append(one_run(d, d.proc.pid, args.seconds, args.slots,
                                    *((args.pyspy, args.perf) if i == args.runs - 1
                                      else (None, None))))
        finally:
            if server is not None:
                server.kill()
                server.communicate()
            d.stop()
    print_table(["run", "conn/s", "slow path us/conn", "slow path % of a CPU",
                 "other threads us/conn"],
                [[i + 1, f"{r['conns_per_s']:.0f}", f"{r['sp_us_per_conn']:.1f}",
                  f"{100 * r['sp_cpu_share']:.0f}",
                  ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["threads_us_per_conn"].items())
                            if v >= 0.5)]
                 for i, r in enumerate(runs)])
    if args.counters and runs:
        print("\ncounters per connection (last run):")
        for k, v in runs[-1]["counters_per_conn"].items():
            print(f"  {k} {v:.3f}")
    write_json("tas_conn_cpu.json", {"seconds": args.seconds, "slots": args.slots,
                                     "runs": runs})


if __name__ == "__main__":
    main()
