"""Runs under the shim: a sqlite3 workload on a database under /strata.

usage: sqlite_worker.py DB write N [wal [TAG]]  -- N transactions; prints "committed <txn> <rows>" after each
       sqlite_worker.py DB check                 -- prints "<integrity_check> <rows> <last txn>"
With wal the database is in WAL mode (-wal file, -shm mapped with mmap);
with a TAG several processes write at once (busy timeout; each transaction
records TAG and its own counter in table tagged, and after its first one
the worker waits until another writer's first commit is visible).
Every transaction also records its number in table txns, so a check after a
crash can tell exactly which commits survived.
"""
import sqlite3
import sys
import time


def write(db, n, wal=False, tag=None):
    con = sqlite3.connect(db, timeout=120)
    if wal:
        assert con.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
    con.execute("create table if not exists t(id integer primary key, v text, w blob)")
    con.execute("create index if not exists t_v on t(v)")
    con.execute("create table if not exists txns(n integer primary key)")
    con.execute("create table if not exists tagged(tag text, k integer, primary key(tag, k))")
    con.commit()
    if tag is not None:
        for k in range(1, n + 1):
            con.execute("insert into tagged values (?, ?)", (tag, k))
            con.executemany("insert into t(v, w) values (?, ?)", [(f"{tag}{k}.{i}", bytes(300)) for i in range(5)])
            con.commit()
            print(f"committed {tag} {k}", flush=True)
            if k == 1:  # both writers are in: wait until the other's first commit shows
                while not con.execute("select count(*) from tagged where tag != ?", (tag,)).fetchone()[0]:
                    time.sleep(0.01)
        con.close()
        return
    rows = con.execute("select count(*) from t").fetchone()[0]
    first = con.execute("select coalesce(max(n), 0) from txns").fetchone()[0] + 1
    for txn in range(first, first + n):
        con.execute("insert into txns values (?)", (txn,))
        con.executemany("insert into t(v, w) values (?, ?)",
                        [(f"row{rows + i}", bytes(300)) for i in range(20)])
        if txn % 5 == 4:
            con.execute("delete from t where id % 7 = 0")
            con.execute("update t set v = v || 'u' where id % 5 = 0")
        con.commit()
        rows = con.execute("select count(*) from t").fetchone()[0]
        print(f"committed {txn} {rows}", flush=True)
    con.close()


def check(db):
    con = sqlite3.connect(db)
    ok = con.execute("pragma integrity_check").fetchone()[0]
    rows = con.execute("select count(*) from t").fetchone()[0]
    last = con.execute("select coalesce(max(n), 0) from txns").fetchone()[0]
    tagged = con.execute("select count(*) from tagged").fetchone()[0] if con.execute(
        "select count(*) from sqlite_master where name = 'tagged'").fetchone()[0] else 0
    print(f"{ok} {rows} {last}" + (f" {tagged}" if tagged else ""))


if __name__ == "__main__":
    if sys.argv[2] == "write":
        write(sys.argv[1], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "wal",
              sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        check(sys.argv[1])
