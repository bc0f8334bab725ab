"""Slow-path CPU with N idle connections (issue 15: a server holding
thousands of idle keep-alive clients must not keep a CPU busy).

  python bench/tas_idle_conns.py [--conns 100,1000,5000] [--seconds 5]
                                 [--algorithm dctcp-rate]

For each N, a daemon of its own: bench/rpc_echo under `tas-run`, a kernel
client in the peer namespace opens N connections, has one byte echoed on
each and then holds them idle.  Reports the CPU share of the daemon's main
thread (the slow path) over the window, and from its counters the
connections a tick visited (per tick, over the window) and how many are
parked.  Buffers are 64 KiB each way, so that the runs stay small in memory
(buffers.app_segment's 4G would take about 8,000 flows of the default
256 KiB + 256 KiB).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from bindings import stats  # noqa: E402
from deploy.report import print_table, write_json  # noqa: E402
from tasd import Daemon  # noqa: E402

RPC_ECHO = os.path.join(ROOT, "build", "bench", "rpc_echo")
PORT = 7350

# In the peer namespace: open N connections (one byte echoed on each), print
# "up", then act on stdin's commands, answering each with the number of
# echoes that came back wrong: "echo K" (data on the first K connections,
# read back), "send K" / "read K" (the two halves), "fin K" (shut the first
# K down for writing, expect the server's EOF, close them), "close 0" (close
# the rest).  EOF on stdin ends it.  tests/tas/test_tas_idle_conns.py uses
# it too.
CLIENT = r"""
import socket, sys
socks = []
for i in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    socks.append(s)
print("up", flush=True)

for line in sys.stdin:
    cmd, k = line.split()
    k, bad = int(k), 0
    if cmd in ("echo", "send"):
        for i, s in enumerate(socks[:k]):
            s.sendall(b"again %06d" % i)
    if cmd in ("echo", "read"):
        for i, s in enumerate(socks[:k]):
            msg = b"again %06d" % i
            bad += s.recv(len(msg), socket.MSG_WAITALL) != msg
    if cmd == "fin":
        for s in socks[:k]:
            s.shutdown(socket.SHUT_WR)
            bad += s.recv(1) != b""
            s.close()
        del socks[:k]
    elif cmd == "close":
        for s in socks:
            s.close()
        socks = []
    print(bad, flush=True)
"""


def main_thread_cpu_s(pid):
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(n, seconds, algorithm):
    with tempfile.TemporaryDirectory() as tmp:
        extra = (f"[cc]\nalgorithm = \"{algorithm}\"\n"
                 "[buffers]\nrx_buf = 65536\ntx_buf = 65536\n")
        d = Daemon(Path(tmp), extra=extra).start()
        procs = []
        try:
            srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance,
                                    "--", RPC_ECHO, "server", str(PORT)], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(srv)
            if not srv.stdout.readline().startswith("listening"):
                raise RuntimeError(f"echo server did not start: {srv.stderr.read()}")
            cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT,
                                    "10.0.0.2", str(PORT), str(n)], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
            procs.append(cli)
            if cli.stdout.readline().strip() != "up":
                raise RuntimeError(f"client failed: {cli.stderr.read()}")
            time.sleep(1)                   # idle from here on
            c0, t0 = stats.read("tas", d.instance), main_thread_cpu_s(d.proc.pid)
            time.sleep(seconds)
            c1, t1 = stats.read("tas", d.instance), main_thread_cpu_s(d.proc.pid)
            ticks = c1.get("tcp_ticks", 0) - c0.get("tcp_ticks", 0)
            visits = c1.get("tcp_tick_visits", 0) - c0.get("tcp_tick_visits", 0)
            return {"conns": n, "slow_path_cpu_pct": round(100 * (t1 - t0) / seconds, 1),
                    "visits_per_tick": round(visits / ticks, 2) if ticks else None,
                    "parked": c1.get("tcp_conns_parked"), "tcp_conns": c1.get("tcp_conns")}
        finally:
            for p in procs:
                p.kill()
                p.communicate()
            d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", default="100,1000,5000", help="idle connection counts, one row each")
    ap.add_argument("--seconds", type=float, default=5, help="measured window per count")
    ap.add_argument("--algorithm", default="dctcp-rate", help="cc.algorithm of the daemon")
    args = ap.parse_args()
    if not os.path.exists(RPC_ECHO):
        sys.exit(f"{RPC_ECHO} is not built (python deploy/native_build.py)")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # server's and client's sockets
    rows = [measure(int(n), args.seconds, args.algorithm) for n in args.conns.split(",") if n]
    print_table(["idle conns", "slow path CPU %", "visits/tick", "parked"],
                [(r["conns"], r["slow_path_cpu_pct"], r["visits_per_tick"], r["parked"])
                 for r in rows])
    write_json("tas_idle_conns.json", {"seconds": args.seconds, "algorithm": args.algorithm,
                                       "rows": rows})


if __name__ == "__main__":
    main()
