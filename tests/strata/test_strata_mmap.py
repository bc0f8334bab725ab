"""mmap of Strata files and real file locks, each case compared with the same
program on a tmpfs directory (/dev/shm) in the same test: Python's mmap
(write() then a mapped read, a mapped store then read(), MAP_PRIVATE, a
second process mapping the same pages, ftruncate + mremap, EACCES/EINVAL,
SIGBUS past EOF), an mmap writer killed with SIGKILL (every msync'd record
survives), fcntl/OFD/flock locks between processes, sqlite3 in WAL mode
(workload, kill -9 mid-transaction, two processes writing one database at
once) and git init/add/commit/gc/log/fsck."""
import json
import os
import signal
import struct
import subprocess
import sys
import uuid

import pytest

from strata_helpers import fsck_clean, shim_env

HERE = os.path.dirname(os.path.abspath(__file__))
MMAP_WORKER = os.path.join(HERE, "mmap_worker.py")
SQLITE_WORKER = os.path.join(HERE, "sqlite_worker.py")


@pytest.fixture
def dirs(pool):
    """A fresh /strata directory and a fresh tmpfs directory."""
    name = uuid.uuid4().hex[:6]
    subprocess.run([sys.executable, "-c", f"import os; os.mkdir('/strata/{name}')"], env=shim_env(pool),
                   check=True)
    ref = f"/dev/shm/strata-ref-{name}"
    os.mkdir(ref)
    yield f"/strata/{name}", ref
    subprocess.run(["rm", "-rf", ref], check=True)


def run(pool, argv, **kw):
    return subprocess.run(argv, env=shim_env(pool), capture_output=True, text=True, timeout=300, **kw)


def shadows(pool):
    """Shadow files of this pool left in /dev/shm (fs_id: superblock offset 24)."""
    with open(pool, "rb") as f:
        fs_id = struct.unpack_from("<Q", f.read(32), 24)[0]
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"strata.{fs_id:016x}.") and n.endswith(".map")]


def test_mmap_coherence_matches_tmpfs(pool, dirs):
    got, want = (json.loads(run(pool, [sys.executable, MMAP_WORKER, "coherence", d], check=True).stdout)
                 for d in dirs)
    assert got == want
    assert want["other_process_sees_store"] == "XPRC" and want["ro_shared_write"] == "EACCES"
    assert got["private_store"] == ["PPPPPPPPPP", True, True]
    assert got["final"][0] == 20000 and got["final"][4] == "RR"
    fsck_clean(pool)
    assert shadows(pool) == []  # the last user removed the shadow


def test_counters(pool, dirs):
    r = run(pool, [sys.executable, MMAP_WORKER, "counters", f"{dirs[0]}/c.bin"], check=True)
    c = json.loads(r.stdout)
    assert c["maps"] == 2 and c["shadow_files"] == 1  # one shared map (one shadow), one private
    assert c["writebacks"] == 1 and c["writeback_bytes"] == 4096  # the one page stored, msync'd
    assert c["locks"] == 2 and c["lock_files"] == 1
    assert shadows(pool) == []  # left at exit (the file was still open, never closed)


def test_store_past_eof_is_sigbus_like_tmpfs(pool, dirs):
    res = [run(pool, [sys.executable, MMAP_WORKER, "sigbus", f"{d}/sb"]) for d in dirs]
    assert [(r.returncode, r.stdout) for r in res] == [(-signal.SIGBUS, "x True\n")] * 2


def kill_writer(pool, path, acks):
    """Start killwriter, SIGKILL it after `acks` msync'd records; the last acknowledged record."""
    p = subprocess.Popen([sys.executable, MMAP_WORKER, "killwriter", path], env=shim_env(pool),
                         stdout=subprocess.PIPE, text=True)
    last = [int(p.stdout.readline()) for _ in range(acks)][-1]
    p.send_signal(signal.SIGKILL)
    p.wait()
    rest = p.stdout.read().split()
    p.stdout.close()
    return int(rest[-1]) if rest else last


def check_records(data, last):
    """Page k holds the newest record <= last stored there; the page of the
    record in flight may hold it, or (killed in the middle of the store, as
    on tmpfs) a mix of it and the record before."""
    for k in range(64):
        want = max((i for i in range(last + 1) if i % 64 == k), default=0)
        words = set(struct.unpack_from("<512Q", data, k * 4096))
        allowed = {want, last + 1} if (last + 1) % 64 == k else {want}
        assert words <= allowed, (k, words, want, last)


def test_mmap_writer_killed_keeps_every_msync(pool, dirs):
    for round_, acks in enumerate((30, 150, 400)):
        for d in dirs:
            last = kill_writer(pool, f"{d}/k.bin", acks)
            data = subprocess.run(["cat", f"{d}/k.bin"], env=shim_env(pool), capture_output=True,
                                  check=True).stdout
            assert len(data) == 64 * 4096
            check_records(data, last)
        fsck_clean(pool)
    assert shadows(pool) == []  # the dead writer's shadow was not kept


@pytest.mark.parametrize("kind", ["posix", "ofd", "flock", "posix-close"])
def test_locks_between_processes_match_tmpfs(pool, dirs, kind):
    results = []
    for d in dirs:
        holder = subprocess.Popen([sys.executable, MMAP_WORKER, "hold", f"{d}/lk", kind], env=shim_env(pool),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        pid = int(holder.stdout.readline())
        held = json.loads(run(pool, [sys.executable, MMAP_WORKER, "probe", f"{d}/lk", kind], check=True).stdout)
        holder.communicate("\n", timeout=60)  # the holder exits: the kernel drops its lock
        free = json.loads(run(pool, [sys.executable, MMAP_WORKER, "probe", f"{d}/lk", kind], check=True).stdout)
        if kind == "posix":
            assert held["getlk"]["pid"] == pid
            held["getlk"]["pid"] = "holder"
        results.append((held, free))
    assert results[0] == results[1]
    held, free = results[0]
    # closing another fd of the file dropped the POSIX lock, as POSIX says
    assert held["try"] == ("ok" if kind == "posix-close" else "EAGAIN") and free["try"] == "ok"
    fsck_clean(pool)


def sqlite_check(pool, db):
    return run(pool, [sys.executable, SQLITE_WORKER, db, "check"], check=True).stdout.split()


def test_sqlite_wal_workload_matches_tmpfs(pool, dirs):
    outs = []
    for d in dirs:
        r = run(pool, [sys.executable, SQLITE_WORKER, f"{d}/w.db", "write", "60", "wal"], check=True)
        outs.append((r.stdout, sqlite_check(pool, f"{d}/w.db")))
    assert outs[0] == outs[1]
    assert outs[0][1][0] == "ok" and outs[0][1][2] == "60"
    assert shadows(pool) == []  # the -shm shadow went with the last connection
    # the sqlite3 CLI, a WAL database and a query from a second program
    script = ("pragma journal_mode=wal; create table k(a integer primary key, b);"
              "with recursive c(x) as (select 1 union all select x + 1 from c where x < 5000) "
              "insert into k select x, hex(randomblob(0)) || x from c; delete from k where a % 3 = 0;")
    cli = [(run(pool, ["sqlite3", f"{d}/c.db", script], check=True).stdout,
            run(pool, ["sqlite3", f"{d}/c.db", "pragma integrity_check; select count(*), sum(a) from k;"],
                check=True).stdout) for d in dirs]
    assert cli[0] == cli[1] == ("wal\n", "ok\n3334|8336667\n")
    fsck_clean(pool)


def test_sqlite_wal_survives_kill9(pool, dirs):
    for d in dirs:
        db = f"{d}/k.db"
        run(pool, [sys.executable, SQLITE_WORKER, db, "write", "5", "wal"], check=True)
        for round_ in range(3):
            p = subprocess.Popen([sys.executable, SQLITE_WORKER, db, "write", "100000", "wal"],
                                 env=shim_env(pool), stdout=subprocess.PIPE, text=True)
            acked = [p.stdout.readline().split() for _ in range(10 + 9 * round_)]
            p.send_signal(signal.SIGKILL)
            p.wait()
            acked += [line.split() for line in p.stdout.read().splitlines()]
            p.stdout.close()
            ok, rows, last = sqlite_check(pool, db)[:3]
            assert ok == "ok"
            acked_txn, acked_rows = int(acked[-1][1]), int(acked[-1][2])
            assert int(last) in (acked_txn, acked_txn + 1), (d, last, acked_txn)
            if int(last) == acked_txn:
                assert int(rows) == acked_rows
        fsck_clean(pool)


@pytest.mark.parametrize("mode", ["wal", "rollback"])
def test_sqlite_two_processes_at_once(pool, dirs, mode):
    for d in dirs:
        db = f"{d}/two.db"
        run(pool, [sys.executable, SQLITE_WORKER, db, "write", "1", mode], check=True)
        procs = [subprocess.Popen([sys.executable, SQLITE_WORKER, db, "write", "300", mode, tag],
                                  env=shim_env(pool), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for tag in ("a", "b")]
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
        # both ran at once (each waited for the other's first commit)
        assert all(o[0].splitlines()[-1] == f"committed {t} 300" for o, t in zip(outs, "ab"))
        ok, rows, last, tagged = sqlite_check(pool, db)
        assert (ok, rows, last, tagged) == ("ok", str(20 + 600 * 5), "1", "600")
    fsck_clean(pool)


GIT = """set -e
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x HOME=$1
export GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z GIT_CONFIG_NOSYSTEM=1
cd "$1"
git init -q -b main repo; cd repo
seq 1 3000 > a.txt; mkdir sub; echo hi > sub/b.txt
git add .; git commit -q -m first
seq 1 5000 > a.txt; git rm -q sub/b.txt; git commit -q -am second
git gc -q
git log --format='%H %s'
git fsck --full --strict 2>&1
git status --porcelain
git cat-file -p HEAD:a.txt | tail -1
"""


def test_git_init_add_commit_matches_tmpfs(pool, dirs):
    outs = [run(pool, ["bash", "-c", GIT, "git", d]) for d in dirs]
    assert [(o.returncode, o.stdout) for o in outs][0] == (outs[1].returncode, outs[1].stdout), outs[0].stderr
    assert outs[0].returncode == 0 and outs[0].stdout.endswith("\n5000\n")
    assert len(outs[0].stdout.splitlines()[0].split()[0]) == 40
    fsck_clean(pool)
