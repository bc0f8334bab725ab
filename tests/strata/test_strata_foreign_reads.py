"""A read sees every write another process made before it, as on Linux.

The writer of a file (its lease holder) logs its writes and returns; they
reach the shared area when it digests.  A reader used to see the file as of
the writer's last digest: `tail -f` of a log another process appends to
printed nothing new, and a copy of a file its writer still held open missed
acknowledged bytes.  A reader now applies the holder's committed log entries
first (strata/libstrata/foreign.c)."""
import hashlib
import json
import os
import select
import signal
import subprocess
import sys

from strata_helpers import fsck_clean, shim_env

# Line-driven so the test orders the two processes without sleeping.
WRITER = r"""
import os, sys
fd = os.open("/strata/f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for line in sys.stdin:
    n, byte = line.split()
    os.write(fd, bytes([int(byte)]) * int(n))
    print("ok", flush=True)
"""

READER = r"""
import hashlib, json, os, sys
fd = os.open("/strata/f", os.O_RDONLY)
for line in sys.stdin:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    print(json.dumps({"fstat": os.fstat(fd).st_size, "end": os.lseek(fd, 0, os.SEEK_END),
                      "stat": os.stat("/strata/f").st_size,
                      "sha": hashlib.sha256(data).hexdigest()}), flush=True)
"""


def ask(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def read_exactly(stream, n):
    """n bytes of a pipe; fails instead of hanging when they never come."""
    got = b""
    while len(got) < n:
        ready, _, _ = select.select([stream], [], [], 60)
        assert ready, f"after 60 s only {got!r}"
        chunk = os.read(stream.fileno(), n - len(got))
        assert chunk, f"end of output after {got!r}"
        got += chunk
    return got


def start(script_or_cmd, env, procs, binary=False):
    """A process with pipes, killed at the end of the test (tests/conftest.py's procs)."""
    cmd = script_or_cmd if isinstance(script_or_cmd, list) else [sys.executable, "-c", script_or_cmd]
    p = subprocess.Popen(cmd, env=env, text=not binary, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    procs.append(p)
    return p


def expect(written):
    n = len(written)
    return {"fstat": n, "end": n, "stat": n, "sha": hashlib.sha256(written).hexdigest()}


def test_reads_see_writes_of_a_live_and_a_killed_writer(pool, procs):
    # the writer digests only at its threshold or close: no background thread
    env = shim_env(pool, STRATA_DIGEST_THREAD="0")
    writer = start(WRITER, env, procs)
    written = b""
    for n, byte in ((5000, 1), (70_000, 2)):   # the second write crosses the direct blocks
        assert ask(writer, f"{n} {byte}") == "ok"
        written += bytes([byte]) * n
    # a reader that starts now, and keeps its descriptor for later reads
    reader = start(READER, env, procs)
    assert json.loads(ask(reader, "read")) == expect(written)
    for n, byte in ((1, 3), (300_000, 4), (10, 5)):
        assert ask(writer, f"{n} {byte}") == "ok"
        written += bytes([byte]) * n
        assert json.loads(ask(reader, "read")) == expect(written)
    # the writer killed with its log undigested: still every byte
    assert ask(writer, "4096 6") == "ok"
    written += bytes([6]) * 4096
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    assert json.loads(ask(reader, "read")) == expect(written)
    fsck_clean(pool)


def test_tail_follows_a_file_another_process_appends_to(pool, procs):
    """`tail -f` (polling) prints the lines a live writer appends."""
    env = shim_env(pool, STRATA_DIGEST_THREAD="0")
    writer = start(WRITER, env, procs)
    assert ask(writer, "3 65") == "ok"          # "AAA"
    tail = start(["tail", "---disable-inotify", "-s", "0.05", "-c", "+1", "-f", "/strata/f"], env,
                 procs, binary=True)
    assert read_exactly(tail.stdout, 3) == b"AAA"
    assert ask(writer, "1 10") == "ok"          # "\n"
    assert ask(writer, "5 66") == "ok"          # "BBBBB"
    assert read_exactly(tail.stdout, 6) == b"\nBBBBB"
    fsck_clean(pool)
