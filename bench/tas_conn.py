"""Short connections: one request per connection, TAS vs Linux in one run.

  python bench/tas_conn.py [--seconds S] [--clients N] [--slots 1,8] [--rst-slots 16]
                           [--sources 8] [--out-slots 1,16] [--device net_af_xdp]

The server is the same unmodified binary on both stacks, bench/rpc_echo.c
(epoll, echoes, closes on EOF): under `tas-run` on a TAS daemon (the
default device, net_af_packet on a veth, or --device), and on the kernel in a namespace
of its own, a veth away.  The clients are
kernel sockets in the daemon's peer namespace, the same for both: each
loops connect, write 64 bytes, read the reply, close.  Reports connections
per second, p50/p99 of connect-to-first-reply and of the whole
connect+request+close, and the client kernel's retransmitted segments
(TcpRetransSegs: a stack that drops the request right behind the handshake
shows one per connection).  The C client's connections come from --sources
addresses (one address's search for a reusable TIME_WAIT port caps a
client at about 30,000 connections a second, whatever the server: both
stacks ran into it at 8 and 16 in flight), with room for all their TIME_WAIT
sockets; --rst-slots rows close with a RST (SO_LINGER 0, as health checkers
and some load balancers do).
Outgoing (--out-slots): the stacks as the client, conn_client under
`tas-run` and on the Linux host, to one rpc_echo on the kernel in the
peer namespace (the connecting side's active opens and closes).
Both ends (--pair-slots, bench/tas_conn_pair.py): client and server both
under `tas-run` on two daemons joined by net_memif, and both on the kernel
in two namespaces a veth apart.
Then nginx (master and `worker_processes 2`, the same config on both
stacks) under wrk from the peer namespace, keep-alive and with
`Connection: close` (one request per connection): requests per second.
Target (issue 15): TAS >= 1.5x Linux connections/s, p99 first reply < 1 ms.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from deploy.report import print_table, write_json  # noqa: E402
from tas_conn_pair import CONN_CLIENT, RPC_ECHO, pair_runs, start_server  # noqa: E402
from tasd import Daemon, veth_namespace  # noqa: E402

PORT = 7300
LINUX_IP = "10.0.2.2"

CLIENT = r"""
import json, socket, sys, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
msg = b"x" * 64
first, whole = [], []
end = time.perf_counter() + secs
while time.perf_counter() < end:
    t0 = time.perf_counter()
    s = socket.create_connection((ip, port))
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(4096)
        if not d:
            raise SystemExit("server closed early")
        got += d
    t1 = time.perf_counter()
    s.close()
    first.append(t1 - t0)
    whole.append(time.perf_counter() - t0)
print(json.dumps({"first": first, "whole": whole}))
"""


def sh(*cmd, ns=None, **kw):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, **kw)


def nstat(ns, name):
    out = sh("nstat", "-az", name, ns=ns).stdout.split()
    return int(out[out.index(name) + 1])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


def run_py_clients(ns, ip, seconds, clients):
    """`clients` sequential Python clients in parallel processes."""
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, ip,
                               str(PORT), str(seconds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    first, whole = [], []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"client failed: {err}")
        r = json.loads(out)
        first += r["first"]
        whole += r["whole"]
    return {"conns_per_s": len(whole) / seconds, "conns": len(whole),
            "first_p50_us": pct(first, 0.5) * 1e6, "first_p99_us": pct(first, 0.99) * 1e6,
            "whole_p50_us": pct(whole, 0.5) * 1e6, "whole_p99_us": pct(whole, 0.99) * 1e6}


def run_c_client(ns, ip, seconds, slots, sources=(), rst=False):
    """bench/conn_client.c: `slots` connections in flight from one C process,
    from the given source addresses, closing with a RST if rst."""
    opts = (["-s", ",".join(sources)] if sources else []) + (["-r"] if rst else [])
    out = sh(CONN_CLIENT, *opts, ip, str(PORT), "64", str(slots), "0.2", str(seconds), ns=ns,
             timeout=seconds + 60).stdout
    return json.loads(out)


def run_clients(ns, ip, seconds, client, sources=()):
    """One measurement: client ("py", n), ("c", slots) or ("rst", slots);
    adds the client kernel's retransmitted segments."""
    before = nstat(ns, "TcpRetransSegs")
    kind, n = client
    if kind == "py":
        r = run_py_clients(ns, ip, seconds, n)
    else:
        r = run_c_client(ns, ip, seconds, n, sources, rst=kind == "rst")
    r["retrans_segs"] = nstat(ns, "TcpRetransSegs") - before
    return r


OUT_PORT = 7301


def outgoing_runs(d, lns, seconds, slots_list):
    """{(slots, stack): conn_client's result}, best of two interleaved runs:
    the client on TAS (tas-run) or on the Linux host, the server rpc_echo
    on the kernel of the daemon's peer namespace."""
    # as for the clients above, but above the ports the Linux host's nginx
    # listens on later (a connection of ours on 8180 kept it from binding)
    for kv in ("net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=10000 65535",
               "net.ipv4.tcp_max_tw_buckets=4000000"):
        sh("sysctl", "-qw", kv, ns=lns)
    srv = start_server(["ip", "netns", "exec", d.netns, RPC_ECHO, "server", str(OUT_PORT)])
    out = {}
    try:
        for slots in slots_list:
            for _ in range(2):
                for stack in ("linux", "tas"):
                    args = ["64", str(slots), "0.2", str(seconds / 2)]
                    if stack == "tas":
                        cmd = [sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                               CONN_CLIENT, "10.0.0.1", str(OUT_PORT), *args]
                    else:
                        cmd = ["ip", "netns", "exec", lns, CONN_CLIENT, "10.0.2.1", str(OUT_PORT),
                               *args]
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
                    if p.returncode != 0:
                        raise RuntimeError(f"{stack} client failed ({p.returncode}): "
                                           f"{p.stdout[-500:]} {p.stderr[-1500:]}")
                    r = json.loads(p.stdout)
                    if r["conns_per_s"] > out.get((slots, stack), {}).get("conns_per_s", -1):
                        out[(slots, stack)] = r
    finally:
        srv.kill()
        srv.communicate()
    return out


def client_name(client):
    kind, n = client
    return {"py": f"python x{n}", "c": f"C, {n} in flight",
            "rst": f"C, {n} in flight, RST close"}[kind]


def add_sources(ns, toward, prefix, n):
    """n more addresses (prefix.100 on) on ns's interface whose address is
    `toward`; returns them."""
    dev = next(line.split()[1] for line in sh("ip", "-o", "-4", "addr", ns=ns).stdout.splitlines()
               if f" {toward}/" in line)
    ips = [f"{prefix}.{100 + i}" for i in range(n)]
    for a in ips:
        sh("ip", "addr", "add", f"{a}/24", "dev", dev, ns=ns)
    return ips


NGINX_CONF = """
daemon off;
master_process on;
user root;
worker_processes 2;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
    uwsgi_temp_path {d}; scgi_temp_path {d};
    server {{ listen {port}; root {d}/www; }}
    {proxy}
}}
"""
NGINX_PORT = 8180
# The reverse-proxy row: nginx (under tas-run, or on the Linux host) passes
# each request to an upstream nginx on the kernel of the daemon's peer
# namespace, over a new upstream connection per request (proxy_pass's
# HTTP/1.0): the stack under test connects once a request.
PROXY_PORT, UPSTREAM_PORT = 8181, 8190
PROXY = "server {{ listen {port}; location / {{ proxy_pass http://{upstream}:{up_port}; }} }}"


def wrk(ns, ip, seconds, close, port=NGINX_PORT):
    """Requests per second of wrk (1 thread, 8 connections)."""
    cmd = ["wrk", "-t1", "-c8", f"-d{max(1, int(seconds))}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd, f"http://{ip}:{port}/index.html"],
                       capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed: {r.stdout} {r.stderr}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed: {out}")
    return float(rate.group(1))


def nginx_runs(d, lns, tmp, seconds):
    """{(stack, mode): requests/s}, best of two interleaved runs."""
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello\n")
    procs = []
    try:
        for stack, prefix, upstream in (
                ("tas", [sys.executable, "-m", "tas.run", "--instance", d.instance, "--"],
                 "10.0.0.1"),
                ("linux", ["ip", "netns", "exec", lns], "10.0.2.1"),
                ("upstream", ["ip", "netns", "exec", d.netns], None)):
            sub = os.path.join(tmp, stack)
            os.makedirs(sub, exist_ok=True)
            conf = os.path.join(sub, "nginx.conf")
            proxy = (PROXY.format(port=PROXY_PORT, upstream=upstream, up_port=UPSTREAM_PORT)
                     if upstream else "")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(d=sub, port=UPSTREAM_PORT if upstream is None
                                          else NGINX_PORT, proxy=proxy).replace(
                    f"root {sub}/www", f"root {www}"))
            procs.append(subprocess.Popen(prefix + ["nginx", "-c", conf, "-p", sub],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        fetch = ("import time, urllib.request, sys\n"
                 "for i in range(300):\n"
                 "    try:\n"
                 "        urllib.request.urlopen(sys.argv[1]).read(); break\n"
                 "    except OSError:\n"
                 "        time.sleep(0.1)\n")
        out = {}
        for stack, ip in (("tas", "10.0.0.2"), ("linux", LINUX_IP)):
            for port in (NGINX_PORT, PROXY_PORT):
                sh(sys.executable, "-c", fetch, f"http://{ip}:{port}/index.html",
                   ns=d.netns, timeout=60)
        for _ in range(2):
            for stack, ip in (("linux", LINUX_IP), ("tas", "10.0.0.2")):
                for mode, close, port in (("keep-alive", False, NGINX_PORT),
                                          ("close", True, NGINX_PORT),
                                          ("proxy", False, PROXY_PORT)):
                    try:
                        r = wrk(d.netns, ip, seconds / 2, close, port)
                    except RuntimeError as e:
                        logs = "".join(
                            f"\n{who}'s error.log: " + open(os.path.join(tmp, who, "error.log"))
                            .read()[-1000:] for who in (stack, "upstream"))
                        alive = [p.poll() is None for p in procs]
                        raise RuntimeError(f"{e}{logs}\nnginx processes alive: {alive}")
                    out[(stack, mode)] = max(r, out.get((stack, mode), 0.0))
        return out
    finally:
        for p in procs:
            p.terminate()
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()


def syn_counters(d):
    """The daemon's SYN counters: answered by the fast path or not, why."""
    from bindings import stats
    try:
        return stats.read("tassyn", d.instance)
    except (OSError, stats.StatsError):
        return {}


def stack_table(title, res):
    """res: {(slots, "linux" | "tas"): conn_client's result}: one row a slots."""
    print()
    rows = []
    for n in sorted({k[0] for k in res}):
        lin, tas = res[(n, "linux")], res[(n, "tas")]
        rows.append([f"C, {n} in flight", f"{lin['conns_per_s']:.0f}", f"{tas['conns_per_s']:.0f}",
                     f"{tas['conns_per_s'] / lin['conns_per_s']:.2f}",
                     f"{lin['first_p99_us']:.0f}", f"{tas['first_p99_us']:.0f}"])
    print_table([title, "linux conns/s", "tas conns/s", "tas/linux", "first reply p99 us linux",
                 "tas"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1,
                    help="sequential Python client processes in parallel (0: none)")
    ap.add_argument("--slots", default="1,8",
                    help="connections in flight of the C client, one row each (\"\" for none)")
    ap.add_argument("--rst-slots", default="16",
                    help="the same for C clients closing with a RST (\"\" for none)")
    ap.add_argument("--out-slots", default="1,16",
                    help="connections in flight of the outgoing rows (\"\" for none)")
    ap.add_argument("--sources", type=int, default=8,
                    help="client source addresses of the C client (1: the namespace's own)")
    ap.add_argument("--pair-slots", default="1,16",
                    help="connections in flight of the both-ends rows: client and server "
                         "both on TAS (two daemons, net_memif) and both on Linux (two "
                         "namespaces, a veth) (\"\" for none)")
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx/wrk part")
    ap.add_argument("--device", default=None,
                    help="dpdk.device of the daemon (default: the config's)")
    ap.add_argument("--syn-pool", type=int, default=None,
                    help="tcp.syn_pool for the daemon (0: the slow path answers every "
                         "SYN, as before the fast path did)")
    args = ap.parse_args()
    for prog in (RPC_ECHO, CONN_CLIENT):
        if not os.path.exists(prog):
            sys.exit(f"{prog} is not built (python deploy/native_build.py)")
    clients = ([("py", args.clients)] if args.clients else []) + \
        [("c", int(n)) for n in args.slots.split(",") if n] + \
        [("rst", int(n)) for n in args.rst_slots.split(",") if n]
    from pathlib import Path
    results, servers = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        # The outgoing rows' Linux client gets a wide port range and
        # tcp_tw_reuse (outgoing_runs): the daemon the same.
        extra = ("[cc]\nalgorithm = \"none\"\n[tcp]\nephemeral_ports = \"10000-65535\"\n"
                 "time_wait_reuse = true\n")
        if args.syn_pool is not None:
            extra += f"syn_pool = {args.syn_pool}\n"
        d = Daemon(Path(tmp), device=args.device, extra=extra).start()
        lns = None
        try:
            lns, _, _ = veth_namespace(d.netns, "10.0.2.1", LINUX_IP)
            servers.append(start_server([sys.executable, "-m", "tas.run", "--instance",
                                         d.instance, "--", RPC_ECHO, "server", str(PORT)]))
            servers.append(start_server(["ip", "netns", "exec", lns, RPC_ECHO, "server",
                                         str(PORT)]))
            # Short connections leave TIME_WAIT behind on the client: reuse
            # it, over every port.  A TIME_WAIT pair is reusable one second
            # after its last segment and connect() tries even ports first, so
            # the default range (28,232 ports) caps any client at about 14,000
            # connections a second, whatever the server's stack.
            sh("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", ns=d.netns)
            sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", ns=d.netns)
            # ... but not the nginx rows' ports: a client's TIME_WAIT pair on
            # one keeps a listener from binding it (the upstream's 8190).
            sh("sysctl", "-qw", f"net.ipv4.ip_local_reserved_ports={NGINX_PORT}-{UPSTREAM_PORT}",
               ns=d.netns)
            # Many clients each keep their own TIME_WAIT sockets; one
            # namespace for all of them must have room (the default, 131,072,
            # fills in a few seconds from 8 addresses, and the kernel then
            # answers the server's FIN with a RST).
            sh("sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=4000000", ns=d.netns)
            sources = {"tas": [], "linux": []}
            if args.sources > 1:
                sources = {"tas": add_sources(d.netns, "10.0.0.1", "10.0.0", args.sources),
                           "linux": add_sources(d.netns, "10.0.2.1", "10.0.2", args.sources)}
            syn0 = syn_counters(d)
            for client in clients:
                for stack, ip in (("linux", LINUX_IP), ("tas", "10.0.0.2"),
                                  ("linux", LINUX_IP), ("tas", "10.0.0.2")):
                    r = run_clients(d.netns, ip, args.seconds / 2, client, sources[stack])
                    prev = results.get((client, stack))
                    if prev is None or r["conns_per_s"] > prev["conns_per_s"]:
                        results[(client, stack)] = r        # best of two, interleaved
            syn = {k: v - syn0.get(k, 0) for k, v in syn_counters(d).items()
                   if v - syn0.get(k, 0)}
            out_slots = [int(n) for n in args.out_slots.split(",") if n]
            conn0 = syn_counters(d)
            outgoing = outgoing_runs(d, lns, args.seconds, out_slots) if out_slots else {}
            conn = {k: v - conn0.get(k, 0) for k, v in syn_counters(d).items()
                    if k.startswith("conn_") and v - conn0.get(k, 0)}
            for p in servers:
                p.kill()
                p.communicate()
            servers = []
            if not args.no_nginx:
                nginx = nginx_runs(d, lns, tmp, args.seconds)
        finally:
            for p in servers:
                p.kill()
                p.communicate()
            if lns:
                subprocess.run(["ip", "netns", "del", lns], capture_output=True)
            d.stop()
    nginx = locals().get("nginx") or {}
    pair_slots = [int(n) for n in args.pair_slots.split(",") if n]
    pair = pair_runs(args.seconds, pair_slots,
                     lambda ns, toward, prefix: add_sources(ns, toward, prefix, args.sources)
                     ) if pair_slots else {}
    rows, ratios = [], {}
    for client in clients:
        lin, tas = results[(client, "linux")], results[(client, "tas")]
        ratios[client_name(client)] = tas["conns_per_s"] / lin["conns_per_s"]
        for stack, r in (("linux", lin), ("tas", tas)):
            rows.append([client_name(client), stack, f"{r['conns_per_s']:.0f}",
                         f"{r['first_p50_us']:.0f}", f"{r['first_p99_us']:.0f}",
                         f"{r['whole_p99_us']:.0f}", r["retrans_segs"],
                         f"{ratios[client_name(client)]:.2f}" if stack == "tas" else ""])
    if rows:
        print_table(["client", "stack", "conns/s", "first reply p50 us", "first reply p99 us",
                     "conn+req+close p99 us", "client retrans", "tas/linux"], rows)
    syn = locals().get("syn") or {}
    print("SYNs (rpc_echo runs): " + ", ".join(f"{k} {v}" for k, v in sorted(syn.items())
                                               if k.startswith("syn_f")))
    outgoing = locals().get("outgoing") or {}
    if outgoing:
        stack_table("outgoing: the stack connects", outgoing)
        conn = locals().get("conn") or {}
        print("connects (tas rows): " + ", ".join(f"{k} {v}" for k, v in sorted(conn.items())))
    if pair:
        stack_table("both ends on the stack", pair)
    if nginx:
        print()
        print_table(["nginx (2 workers), wrk -c8", "linux req/s", "tas req/s", "tas/linux"],
                    [[mode, f"{nginx[('linux', mode)]:.0f}", f"{nginx[('tas', mode)]:.0f}",
                      f"{nginx[('tas', mode)] / nginx[('linux', mode)]:.2f}"]
                     for mode in ("keep-alive", "close", "proxy")])
    write_json("tas_conn.json", {"seconds": args.seconds, "clients": args.clients,
                                 "slots": args.slots, "rst_slots": args.rst_slots,
                                 "sources": args.sources, "device": d.device,
                                 "syn_pool": args.syn_pool, "syn": syn,
                                 "connects": locals().get("conn") or {},
                                 "server": "bench/rpc_echo.c",
                                 "results": {f"{client_name(c)}/{s}": r
                                             for (c, s), r in results.items()},
                                 "ratios": ratios,
                                 "outgoing": {f"C {n}/{s}": r for (n, s), r in outgoing.items()},
                                 "both_ends": {f"C {n}/{s}": r for (n, s), r in pair.items()},
                                 "nginx": {f"{s}/{m}": v for (s, m), v in nginx.items()}})


if __name__ == "__main__":
    main()
