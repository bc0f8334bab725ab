"""Runs under the shim: a sqlite3 workload on a database under /strata.

usage: sqlite_worker.py DB write N   -- N transactions; prints "committed <txn> <rows>" after each
       sqlite_worker.py DB check     -- prints "<integrity_check> <rows> <last txn>"
Every transaction also records its number in table txns, so a check after a
crash can tell exactly which commits survived.
"""
import sqlite3
import sys


def write(db, n):
    con = sqlite3.connect(db)
    con.execute("create table if not exists t(id integer primary key, v text, w blob)")
    con.execute("create index if not exists t_v on t(v)")
    con.execute("create table if not exists txns(n integer primary key)")
    con.commit()
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
    print(f"{ok} {rows} {last}")


if __name__ == "__main__":
    if sys.argv[2] == "write":
        write(sys.argv[1], int(sys.argv[3]))
    else:
        check(sys.argv[1])
