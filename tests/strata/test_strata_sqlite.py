"""Python's sqlite3 under the shim on a database in /strata: integrity_check
is ok after a workload, and after a kill -9 in the middle of one every
committed transaction survives (sqlite rolls back its hot journal)."""
import os
import signal
import subprocess
import sys

from strata_helpers import fsck_clean, shim_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqlite_worker.py")
DB = "/strata/db/test.db"


def worker(pool, *args, **kw):
    return subprocess.run([sys.executable, WORKER, DB, *args], env=shim_env(pool),
                          capture_output=True, text=True, timeout=120, **kw)


def check(pool):
    r = worker(pool, "check", check=True)
    ok, rows, last = r.stdout.split()
    return ok, int(rows), int(last)


def setup_db(pool):
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/db')"],
                   env=shim_env(pool), check=True)


def test_sqlite_workload_integrity(pool):
    setup_db(pool)
    r = worker(pool, "write", "60", check=True)
    _, txn, rows = r.stdout.splitlines()[-1].split()
    assert check(pool) == ("ok", int(rows), int(txn)) and int(txn) == 60
    fsck_clean(pool)


def test_sqlite_survives_kill9(pool):
    setup_db(pool)
    worker(pool, "write", "5", check=True)
    for round_ in range(4):
        p = subprocess.Popen([sys.executable, WORKER, DB, "write", "100000"], env=shim_env(pool),
                             stdout=subprocess.PIPE, text=True)
        acked = [p.stdout.readline().split() for _ in range(10 + 7 * round_)]
        p.send_signal(signal.SIGKILL)
        p.wait()
        acked += [line.split() for line in p.stdout.read().splitlines()]  # printed before death
        p.stdout.close()
        ok, rows, last = check(pool)
        assert ok == "ok"
        # every acknowledged commit is there; at most the one in flight more
        acked_txn, acked_rows = int(acked[-1][1]), int(acked[-1][2])
        assert last in (acked_txn, acked_txn + 1), (last, acked_txn)
        if last == acked_txn:
            assert rows == acked_rows
        fsck_clean(pool)


def test_three_processes_share_the_pool(pool):
    setup_db(pool)
    procs = [subprocess.Popen([sys.executable, WORKER, f"/strata/db/p{i}.db", "write", "40"],
                              env=shim_env(pool), stdout=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    for i, out in enumerate(outs):
        _, txn, rows = out.splitlines()[-1].split()
        r = subprocess.run([sys.executable, WORKER, f"/strata/db/p{i}.db", "check"],
                           env=shim_env(pool), capture_output=True, text=True, check=True)
        assert r.stdout.split() == ["ok", rows, txn]
    fsck_clean(pool)
