"""The background digest thread (strata/digest_bg.c): it applies a writer's
log while the writer appends, the bytes are the same as when the writer
digests itself, a SIGKILL while it runs loses nothing acknowledged, and fork
and exec of a process running it work."""
import json
import os
import random
import signal
import subprocess
import sys
import time

from strata_helpers import ROOT, fsck_clean, shim_env, strata_cli

WORKER = os.path.join(ROOT, "tests", "strata", "digest_thread_worker.py")
REC = 4096


def record(i):
    return (b"%08d" % i) * (REC // 8)


def cat(pool, path):
    r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "cat", path],
                       capture_output=True, check=True, cwd=ROOT, timeout=60)
    return r.stdout


def test_thread_digests_and_bytes_match_writer_digests(pool):
    runs = {}
    for flag in ("1", "0"):  # 12 MiB through 1 MiB logs
        name = f"/strata/t{flag}"
        r = subprocess.run([sys.executable, WORKER, "append", name, "3000"], capture_output=True, text=True,
                           env=shim_env(pool, STRATA_DIGEST_THREAD=flag), timeout=300)
        assert r.returncode == 0, r.stderr
        runs[flag] = c = json.loads(r.stdout.splitlines()[-1])
        want = b"".join(record(i) for i in range(c["records"]))
        assert cat(pool, name) == want
        assert c["digested_bytes"] >= len(want) - (1 << 20), c  # all but the last log's worth
    on, off = runs["1"], runs["0"]
    assert on["bg_digest_threads"] == 1 and on["bg_digest_passes"] >= 1 and on["bg_digest_kicks"] >= 1, on
    assert off["bg_digest_threads"] == 0 and off["bg_digest_passes"] == 0 and off["digests"] > 10, off
    assert off["records"] == 3000
    fsck_clean(pool)


def test_sigkill_while_the_thread_digests(pool):
    rng = random.Random(12)
    for trial in range(12):
        name = f"/strata/crash{trial}"
        w = subprocess.Popen([sys.executable, WORKER, "crash", name], stdout=subprocess.PIPE, text=True,
                             env=shim_env(pool))
        early = []
        while (ln := w.stdout.readline()) != "W\n":  # until the thread has applied part of the log
            assert ln, "writer ended"
            early.append(ln.strip())
        time.sleep(rng.uniform(0.0, 0.05))
        w.send_signal(signal.SIGKILL)
        out = early + w.stdout.read().split("\n")[:-1]  # the last one may be cut by the kill
        w.wait()
        w.stdout.close()
        acked = max(int(ln.split()[1]) + 1 for ln in out if ln.startswith("A "))
        data = cat(pool, name)  # the first use mounts and recovers the dead log
        n = len(data) // REC
        assert len(data) % REC == 0 and acked <= n <= acked + 1, (trial, acked, len(data))
        assert data == b"".join(record(i) for i in range(n)), trial
        fsck_clean(pool)
        subprocess.run([sys.executable, "-c", f"import os; os.unlink({name!r})"], check=True,
                       env=shim_env(pool), timeout=60)


def test_fork_and_exec_with_the_thread_running(pool):
    name = "/strata/forked"
    r = subprocess.run([sys.executable, WORKER, "fork", name], capture_output=True,
                       env=shim_env(pool), timeout=120)
    assert r.returncode == 0, r.stderr
    child_bytes = b"".join(record(k) for k in range(2000))
    assert r.stdout.startswith(child_bytes)  # cat, exec'd by the child, read it all
    parent = json.loads(r.stdout[len(child_bytes):].strip())
    assert parent["status"] == 0
    assert parent["threads"] == 2  # the parent's and the child's own
    assert cat(pool, name) == b"".join(record(i) for i in range(parent["parent_records"]))
    assert cat(pool, name + ".child") == child_bytes
    fsck_clean(pool)
