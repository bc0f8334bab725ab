"""Shared helpers of the Strata tests (conftest.py holds only fixtures)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "tests", "strata")
CRASHWRITER = os.path.join(BUILD, "strata_crashwriter")
LIBSTRATA = os.path.join(ROOT, "strata", "libstrata.so")
# the same library with test hooks (tests/strata/testhook.c), never installed
LIBSTRATA_TESTHOOKS = os.path.join(BUILD, "libstrata_testhooks.so")


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


def api(pool, *args, env=None):
    """Run one api_worker.py step in a child; returns its JSON result."""
    import json
    r = subprocess.run([sys.executable, API_WORKER, pool, *args], capture_output=True, text=True,
                       timeout=120, env=env)
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


KIND = {1: "create", 2: "mkdir", 3: "unlink", 4: "rmdir", 5: "rename", 6: "write", 7: "ref",
        8: "truncate", 9: "setattr"}


def log_entries(pool, pid):
    """(kind, continues-transaction) of every committed entry in pid's log
    slot, read from the pool file without mounting it (no recovery)."""
    ffi = layout()
    with open(pool, "rb") as f:
        data = f.read()
    buf = ffi.from_buffer(data)
    sb = ffi.cast("struct strata_super *", buf)
    slots = ffi.cast("struct strata_slot *", buf + sb.off_slots)
    slot = [i for i in range(sb.nslots) if slots[i].owner_pid == pid]
    if not slot:
        return []
    at, end, out = sb.off_logs + slot[0] * sb.log_bytes, sb.off_logs + (slot[0] + 1) * sb.log_bytes, []
    while at + 64 <= end:
        e = ffi.cast("struct strata_entry *", buf + at)
        if e.commit != 0x1FB9 or e.epoch != slots[slot[0]].epoch:
            break
        out.append((KIND.get(e.kind, e.kind), bool(e.flags & 1)))
        at += e.entry_len
    return out
