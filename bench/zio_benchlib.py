"""Shared helpers for the zIO benchmarks: locating built programs, launching
a server plainly or under `zio run`, free ports, tables and JSON output."""
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("ZIO_BUILD_DIR", os.path.join(ROOT, "build"))
RESULTS = os.path.join(ROOT, "bench", "results")


def built(name):
    path = os.path.join(BUILD, "zio", name)
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run `python deploy/native_build.py`")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd, zio, zio_opts=(), **kw):
    """Start cmd plainly or through the `zio run` CLI with the built libzio."""
    env = dict(os.environ, PYTHONPATH=ROOT, ZIO_LIB=built("libzio.so"))
    if zio:
        cmd = [sys.executable, "-m", "zio.cli", "run", *zio_opts, "--", *cmd]
    return subprocess.Popen(cmd, env=env, **kw)


def wait_port(port, proc, tries=400):
    for _ in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"server exited with {proc.returncode}")
            time.sleep(0.025)
    sys.exit("server did not start")


def zio_counters(pid):
    sys.path.insert(0, ROOT)
    from bindings import stats
    try:
        return stats.read("zio", str(pid))
    except stats.StatsError:
        return {}


def print_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{str(c):>{w}}" for c, w in zip(r, widths)))


def write_json(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print(f"\nwrote {os.path.relpath(path, ROOT)}")
