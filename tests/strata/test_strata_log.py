"""Strata's operation log on a pool in /dev/shm, through the library: what a
process appends is decoded here with the one layout definition
(strata_layout.h via cffi), a later mount replays it, and the entry checksum
makes recovery stop at the first damaged entry (payload or header), so the
file system holds exactly the prefix of operations before it."""
import os
import subprocess
import sys

import pytest

from strata_helpers import ROOT, layout

pytestmark = pytest.mark.fast

# Runs the operations in a child that exits without detaching (os._exit),
# leaving its log undigested, as a crash would.
WRITER = """
import os, sys
from strata import api
L = api.lib()
pool = sys.argv[1]
api.check(L.strata_mkfs(pool.encode(), 64 << 20, 4, 1 << 20, 256), "mkfs")
api.attach(pool)
api.check(L.strata_mkdir(b"/d", 0o755), "mkdir")
fd = api.check(L.strata_open(b"/d/f", os.O_CREAT | os.O_WRONLY, 0o644), "open")
api.check(L.strata_write(fd, b"hello", 5), "write")
api.check(L.strata_pwrite(fd, b"XY", 2, 100), "pwrite")
print(os.getpid(), flush=True)
os._exit(0)
"""

READER = """
import sys
from strata import api
api.attach(sys.argv[1])
try:
    data = api.read_file("/d/f")
except api.StrataError as e:
    data = None
print(repr(data))
print(api.fsck(sys.argv[1])[0])
"""


def run(script, pool):
    r = subprocess.run([sys.executable, "-c", script, pool], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": ROOT, "STRATA_QUIET": "1",
                                                   "PATH": os.environ.get("PATH", "")})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def entries(pool, pid):
    """(offset in the pool, decoded entry) of each committed entry in pid's log."""
    ffi = layout()
    with open(pool, "rb") as f:
        sb = ffi.new("struct strata_super *")
        ffi.buffer(sb)[:] = f.read(ffi.sizeof("struct strata_super"))
        f.seek(sb.off_slots)
        slots = f.read(sb.nslots * ffi.sizeof("struct strata_slot"))
        view = ffi.from_buffer("struct strata_slot[]", slots)
        (slot,) = [i for i in range(sb.nslots) if view[i].owner_pid == pid]
        epoch = view[slot].epoch
        f.seek(sb.off_logs + slot * sb.log_bytes)
        log = f.read(sb.log_bytes)
    out, off = [], 0
    while off + 64 <= len(log):
        e = ffi.from_buffer("struct strata_entry *", log[off:off + 64])
        if e.commit != 0x1FB9 or e.epoch != epoch:
            break
        payload = log[off + 64:off + e.entry_len]
        out.append((sb.off_logs + slot * sb.log_bytes + off,
                    dict(kind=e.kind, len=e.len, off=e.off, entry_len=e.entry_len,
                         name=payload[:e.name_len], ino=e.ino, parent=e.parent,
                         data=payload[:e.len] if e.kind == 6 else b"")))
        off += e.entry_len
    return out


@pytest.fixture
def written(pool_path):
    pid = int(run(WRITER, pool_path)[0])
    return pool_path, entries(pool_path, pid)


def flip(pool, at):
    with open(pool, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))


def test_each_operation_is_one_entry_in_order(written):
    _, log = written
    kinds = [e["kind"] for _, e in log]
    assert kinds == [2, 1, 6, 6]      # MKDIR, CREATE, WRITE, WRITE (strata_kind)
    mkdir, create, w1, w2 = (e for _, e in log)
    assert mkdir["name"] == b"d" and create["name"] == b"f"
    assert create["parent"] == mkdir["ino"]
    assert (w1["off"], w1["len"], w1["data"]) == (0, 5, b"hello")
    assert (w2["off"], w2["len"], w2["data"]) == (100, 2, b"XY")
    assert w1["ino"] == w2["ino"] == create["ino"]
    assert all(e["entry_len"] == 64 * -(-(64 + len(e["name"]) + len(e["data"])) // 64)
               for _, e in log)


def test_mount_replays_the_dead_writers_log(written):
    pool, _ = written
    data, problems = run(READER, pool)
    assert data == repr(b"hello" + b"\0" * 95 + b"XY")
    assert problems == "0"


def test_damaged_payload_drops_that_entry_and_keeps_the_prefix(written):
    pool, log = written
    at, last = log[-1]
    flip(pool, at + 64)               # the 'X' of the last write
    data, problems = run(READER, pool)
    assert data == repr(b"hello") and problems == "0"


def test_damaged_header_drops_that_entry_and_everything_after(written):
    pool, log = written
    at, _ = log[2]
    flip(pool, at + 24)               # the first write's offset field
    data, problems = run(READER, pool)
    assert data == repr(b"") and problems == "0"   # created, never written


def test_damaged_namespace_entry_stops_the_replay_there(written):
    pool, log = written
    at, _ = log[1]
    flip(pool, at + 64)               # the 'f' of the CREATE
    data, problems = run(READER, pool)
    # Namespace entries are applied when they are made (ns_applied), so /d/f
    # exists; the writes logged after the damaged entry are not replayed.
    assert data == repr(b"") and problems == "0"
