"""bench/tas_conn.py's both-ends rows: the same client and server programs
(bench/conn_client.c, bench/rpc_echo.c) both under `tas-run` on two TAS
daemons joined by net_memif, and both on the Linux kernel in two namespaces
joined by a veth.  The TAS client has its daemon's one address; the Linux
client gets several (add_sources), since one address's search for a
reusable TIME_WAIT port caps a Linux client at about 30,000 connections a
second.  The clients' port range and TIME_WAIT reuse are the same
(10000-65535, reuse after a second)."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from tas_benchlib import start_memif_pair  # noqa: E402
from tasd import unique, veth_namespace  # noqa: E402

RPC_ECHO = os.path.join(ROOT, "build", "bench", "rpc_echo")
CONN_CLIENT = os.path.join(ROOT, "build", "bench", "conn_client")
PAIR_PORT = 7302
TCP_KEYS = '[tcp]\nephemeral_ports = "10000-65535"\ntime_wait_reuse = true\n'


def _client(prefix, ip, slots, seconds, stack, sources):
    opts = ["-s", ",".join(sources)] if sources else []
    cmd = prefix + [CONN_CLIENT, *opts, ip, str(PAIR_PORT), "64", str(slots), "0.2",
                    str(seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError(f"{stack} client failed ({p.returncode}): {p.stdout[-500:]} "
                           f"{p.stderr[-1500:]}")
    return json.loads(p.stdout)


def start_server(cmd):
    """An echo server (rpc_echo, or tas_conn.py's Python one): once it says
    it listens."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        p.kill()
        raise RuntimeError(f"echo server did not start: {line}{p.stderr.read()}")
    return p


def _stop(p):
    p.kill()
    p.communicate()


def pair_runs(seconds, slots_list, add_sources):
    """{(slots, stack): conn_client's result}, stack "linux" or "tas", best
    of two interleaved runs each.  add_sources(ns, toward, prefix): more
    client addresses in ns (tas_conn.py's)."""
    out, servers, namespaces, daemons = {}, [], [], []
    try:
        # Linux: server in one namespace, client in another, a veth between.
        srv_ns = unique("lpa")
        subprocess.run(["ip", "netns", "add", srv_ns], check=True)
        namespaces.append(srv_ns)
        cli_ns, _, _ = veth_namespace(srv_ns, "10.3.0.1", "10.3.0.2")
        namespaces.append(cli_ns)
        for kv in ("net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=10000 65535",
                   "net.ipv4.tcp_max_tw_buckets=4000000"):
            subprocess.run(["ip", "netns", "exec", cli_ns, "sysctl", "-qw", kv], check=True)
        sources = add_sources(cli_ns, "10.3.0.2", "10.3.0")
        servers.append(start_server(["ip", "netns", "exec", srv_ns, RPC_ECHO, "server",
                                     str(PAIR_PORT)]))
        # TAS: two daemons on net_memif, each app on its fast path's CPU.
        tmp = tempfile.mkdtemp()
        daemons.extend(start_memif_pair(tmp, pin_apps=True, extra=TCP_KEYS,
                                        names=("connpa", "connpb")))
        run = [sys.executable, "-m", "tas.run", "--instance"]
        servers.append(start_server(run + [daemons[0].instance, "--", RPC_ECHO, "server",
                                           str(PAIR_PORT)]))
        clients = {"linux": (["ip", "netns", "exec", cli_ns], "10.3.0.1", sources),
                   "tas": (run + [daemons[1].instance, "--"], "10.1.0.1", [])}
        for slots in slots_list:
            for _ in range(2):
                for stack, (prefix, ip, srcs) in clients.items():
                    r = _client(prefix, ip, slots, seconds / 2, stack, srcs)
                    if r["conns_per_s"] > out.get((slots, stack), {}).get("conns_per_s", -1):
                        out[(slots, stack)] = r
    finally:
        for p in servers:
            _stop(p)
        for d in reversed(daemons):
            d.stop()
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return out
