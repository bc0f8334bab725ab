"""TAS RPC echo benchmark: one command, one table, one JSON file.

  python bench/tas_rpc.py [--duration S] [--sizes 64,2048] [--conns 1,8,64]

Closed-loop RPC echo (one request in flight per connection) with the same
Python client and server code on both stacks:
  tas:   two TAS daemons joined by net_memif (server app on one, client app
         on the other), each with a fast-path lcore;
  linux: the kernel's TCP over loopback.
Both runs share this machine's cores.  Reports requests/s and p50/p99
latency, and the TAS/Linux throughput ratio per point.
Target (issue 5): >= 2x Linux throughput at 64 B and a lower p99.
"""
import argparse
import os
import selectors
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from deploy.report import print_table, write_json  # noqa: E402
from tas.app import TasApp, TasError  # noqa: E402
from tas.launcher import DaemonProcess  # noqa: E402

PORT = 7000


def percentile(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100 * len(sorted_vals)))]


class Recorder:
    """Per-RPC latencies of the measured window."""

    def __init__(self, start, end):
        self.start, self.end = start, end
        self.lat = []

    def done(self, sent_at, now):
        if self.start <= sent_at and now <= self.end:
            self.lat.append(now - sent_at)

    def result(self, duration):
        lat = sorted(self.lat)
        return {"rps": len(lat) / duration, "p50_us": percentile(lat, 50) * 1e6,
                "p99_us": percentile(lat, 99) * 1e6}


# ---- Linux: selectors over kernel sockets -----------------------------------

def linux_server(lsock, size, stop):
    sel = selectors.DefaultSelector()
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ)
    bufs = {}
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            s = key.fileobj
            if s is lsock:
                c, _ = lsock.accept()
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ)
                bufs[c] = b""
                continue
            try:
                d = s.recv(65536)
            except ConnectionError:
                d = b""
            if not d:
                sel.unregister(s)
                s.close()
                continue
            bufs[s] += d
            while len(bufs[s]) >= size:
                s.sendall(bufs[s][:size])
                bufs[s] = bufs[s][size:]


def linux_point(size, conns, duration, warmup):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    port = lsock.getsockname()[1]
    stop = threading.Event()
    srv = threading.Thread(target=linux_server, args=(lsock, size, stop), daemon=True)
    srv.start()
    msg = b"m" * size
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = [0, time.perf_counter()]
        s.sendall(msg)
    t0 = time.perf_counter()
    rec = Recorder(t0 + warmup, t0 + warmup + duration)
    while time.perf_counter() < rec.end:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            st = state[s]
            st[0] += len(s.recv(65536))
            if st[0] >= size:
                now = time.perf_counter()
                rec.done(st[1], now)
                st[0], st[1] = 0, now
                s.sendall(msg)
    for s in state:
        s.close()
    stop.set()
    srv.join()
    lsock.close()
    return rec.result(duration)


# ---- TAS: the low-level API over two daemons ---------------------------------

def tas_server(inst, size, stop, ready):
    app = TasApp(inst)
    lst = app.listen(PORT, backlog=1024)
    ready.set()
    flows, pending = [], {}
    while not stop.is_set():
        app.wait(10)
        while (f := app.accept(lst, block=False)) is not None:
            flows.append(f)
            pending[f.id] = b""
        for f in list(flows):
            try:
                d = f.recv(65536, block=False)
            except TasError:         # the client resets its flows at the end
                flows.remove(f)
                f.close()
                continue
            if d:
                pending[f.id] += d
                while len(pending[f.id]) >= size:
                    f.sendall(pending[f.id][:size])
                    pending[f.id] = pending[f.id][size:]
    app.close()


def tas_point(insts, size, conns, duration, warmup):
    stop, ready = threading.Event(), threading.Event()
    srv = threading.Thread(target=tas_server, args=(insts[0], size, stop, ready), daemon=True)
    srv.start()
    ready.wait(30)
    app = TasApp(insts[1])
    msg = b"m" * size
    flows = [app.connect("10.1.0.1", PORT) for _ in range(conns)]
    state = {f.id: [0, time.perf_counter()] for f in flows}
    for f in flows:
        f.sendall(msg)
    t0 = time.perf_counter()
    rec = Recorder(t0 + warmup, t0 + warmup + duration)
    while time.perf_counter() < rec.end:
        app.wait(10)
        for f in flows:
            d = f.recv(65536, block=False)
            if not d:
                continue
            st = state[f.id]
            st[0] += len(d)
            if st[0] >= size:
                now = time.perf_counter()
                rec.done(st[1], now)
                st[0], st[1] = 0, now
                f.sendall(msg)
    for f in flows:
        f.close(reset=True)
    app.close()
    stop.set()
    srv.join()
    return rec.result(duration)


def start_memif_pair(tmp, idle_block_us):
    """Two daemons, one memif link: A (memif server, 10.1.0.1), B (client).
    Each fast path gets its own core (A: 1, B: 0); they block after
    idle_block_us so the apps on the same two cores get to run."""
    sock = os.path.join(tmp, "memif.sock")
    procs = []
    for name, role, ip, mac, main_core, fp_core in (
            ("bencha", "server", "10.1.0.1", "02:00:00:00:01:01", 0, 1),
            ("benchb", "client", "10.1.0.2", "02:00:00:00:01:02", 1, 0)):
        path = os.path.join(tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[tas]\ninstance = "{name}"\nip = "{ip}"\nmac = "{mac}"\n'
                    f'[dpdk]\ndevice = "net_memif"\nmemif_role = "{role}"\n'
                    f'memif_socket = "{sock}"\nmem_mb = 256\nmbufs = 8191\n'
                    f'main_core = {main_core}\nfp_cores = [{fp_core}]\n'
                    f'[fastpath]\nidle_block_us = {idle_block_us}\n'
                    f'[peer]\nnetns = ""\nip = "10.1.0.254"\n')
        procs.append(DaemonProcess(path, name, None).start())
    return procs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per point")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--sizes", default="64,2048")
    ap.add_argument("--conns", default="1,8,64")
    ap.add_argument("--idle-block-us", type=int, default=200,
                    help="fast-path idle time before blocking (2 cores are shared)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    conns = [int(x) for x in args.conns.split(",")]
    rows, points = [], []
    with tempfile.TemporaryDirectory() as tmp:
        daemons = start_memif_pair(tmp, args.idle_block_us)
        try:
            for size in sizes:
                for c in conns:
                    t = tas_point(["bencha", "benchb"], size, c, args.duration, args.warmup)
                    lx = linux_point(size, c, args.duration, args.warmup)
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
    write_json("tas_rpc.json", {"duration_s": args.duration,
                                "idle_block_us": args.idle_block_us, "points": points})


if __name__ == "__main__":
    main()
