"""Shared helpers of the Strata tests (conftest.py holds only fixtures)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "tests", "strata")
CRASHWRITER = os.path.join(BUILD, "strata_crashwriter")
LIBSTRATA = os.path.join(ROOT, "strata", "libstrata.so")


def strata_cli(*args, pool, check=True):
    """Run the `strata` CLI in a child (each child mounts the pool itself)."""
    return subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, *args],
                          cwd=ROOT, capture_output=True, text=True, check=check, timeout=60)


def shim_env(pool, **extra):
    env = dict(os.environ, STRATA_POOL=pool, LD_PRELOAD=LIBSTRATA, PYTHONPATH=ROOT,
               STRATA_MOUNT="/strata")
    env.update(extra)
    return env


def fsck_clean(pool):
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clean" in r.stdout


API_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api_worker.py")


def api(pool, *args):
    """Run one api_worker.py step in a child; returns its JSON result."""
    import json
    r = subprocess.run([sys.executable, API_WORKER, pool, *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def layout():
    """cffi view of include/strata/strata_layout.h (the one layout definition)."""
    import cffi
    sys.path.insert(0, ROOT)
    from bindings.cdef import cdef_of
    ffi = cffi.FFI()
    ffi.cdef(cdef_of("strata/strata_layout.h"))
    return ffi
