"""Bulk transfers between a TAS app and the Linux peer, with digests.

Shared by the demo, the tests and the benchmarks: each returns what moved,
whether both ends saw the same bytes, and how long it took.
"""
import json
import os
import subprocess
import sys
import time

from deploy.peer_tcp import read_all, send_seeded

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_tcp.py")


def peer(netns, *args):
    """Run deploy/peer_tcp.py in `netns`; waits until a listening peer listens."""
    cmd = [sys.executable, PEER, *map(str, args)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if args[0] in ("sink", "serve-source"):
        line = p.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"peer did not listen: {p.stderr.read()}")
    return p


def peer_result(p):
    out, err = p.communicate(timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"peer failed: {err}")
    return json.loads(out.strip().splitlines()[-1])


def linux_to_tas(netns, app, port, nbytes, seed, peer_ip="10.0.0.2", ctx=0):
    """Linux client sends to a TAS server: (bytes received, digests equal, s).
    ctx: the app's context the connection uses."""
    lst = app.listen(port, ctx=ctx)
    p = peer(netns, "source", peer_ip, port, nbytes, seed)
    flow = app.accept(lst)
    t = time.monotonic()
    n, digest = read_all(flow)
    secs = time.monotonic() - t
    flow.close()
    app.close_listener(lst)
    r = peer_result(p)
    return n, n == r["bytes"] and digest == r["sha256"], secs


def tas_to_linux(netns, app, port, nbytes, seed, peer_ip="10.0.0.1", ctx=0):
    """A TAS client sends to a Linux server: (bytes the peer got, equal, s)."""
    p = peer(netns, "sink", port)
    flow = app.connect(peer_ip, port, ctx=ctx)
    t = time.monotonic()
    digest = send_seeded(flow, nbytes, seed)
    flow.close()
    r = peer_result(p)
    secs = time.monotonic() - t
    return r["bytes"], r["sha256"] == digest, secs


def both_ways_intact(netns, app, port, nbytes, seed):
    """Linux to TAS on `port`, then TAS to Linux on port + 1: True when
    each moved all `nbytes` and both ends saw the same bytes."""
    n, same, _ = linux_to_tas(netns, app, port, nbytes, seed)
    m, same2, _ = tas_to_linux(netns, app, port + 1, nbytes, seed + 1)
    return n == nbytes and same and m == nbytes and same2


def linux_to_linux(src_ns, dst_ns, dst_ip, port, nbytes, seed):
    """Baseline: kernel to kernel (namespaces may be None for the root)."""
    sink = peer(dst_ns, "sink", port)
    t = time.monotonic()
    src = peer(src_ns, "source", dst_ip, port, nbytes, seed)
    a, b = peer_result(src), peer_result(sink)
    secs = time.monotonic() - t
    return b["bytes"], a["sha256"] == b["sha256"], secs
