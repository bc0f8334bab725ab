"""Shared helpers for the zIO benchmarks: locating built programs, launching
a server plainly or under `zio run`, free ports; tables and JSON output come
from deploy/report.py."""
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("ZIO_BUILD_DIR", os.path.join(ROOT, "build"))
sys.path.insert(0, ROOT)
from deploy.report import print_table, write_json  # noqa: E402,F401  (shared result output)


def built(name):
    """libzio.so from build/zio/, benchmark programs from build/bench/."""
    path = os.path.join(BUILD, "zio" if name.endswith(".so") else "bench", name)
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
    from bindings import stats
    try:
        return stats.read("zio", str(pid))
    except stats.StatsError:
        return {}
