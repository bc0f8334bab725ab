"""PostgreSQL, unmodified, on the whole stack: `kbrun --shared-writers` as
the postgres user, its data directory on Strata, clients (psql, pgbench)
on the kernel in the peer namespace.  The postmaster accepts and forks a
backend per connection, which takes the connection over (TAS_CTL_CLAIM);
its backends, checkpointer and WAL writer write the same files without file
locks (STRATA_SHARED_WRITERS).  pgbench's transactions keep the sums of
the three tables' balances and of the history's deltas equal (runs with -n:
pgbench would otherwise empty the history first): after a kill -9 of every
PostgreSQL process mid-run, recovery must find them equal again."""
import os
import pwd
import signal
import subprocess

import pytest

import orp_stack as st
from bindings import stats
from pg_helpers import PG, as_postgres, start_postgres_cmd
from tasd import wait_until

SYSTEM_PYTHON = "/usr/bin/python3"    # readable by the postgres user (ours may not be)
DATA = "/strata/pg"
SUMS = ("select (select sum(abalance) from pgbench_accounts), "
        "(select sum(bbalance) from pgbench_branches), "
        "(select sum(tbalance) from pgbench_tellers), "
        "(select coalesce(sum(delta), 0) from pgbench_history), "
        "(select count(*) from pgbench_history)")


@pytest.fixture
def pg_pool(orp_pool):
    """initdb on Strata, as postgres; clients from the peer namespace trusted."""
    pwd.getpwnam("postgres")     # deploy/setup installs postgresql-15
    os.chmod(orp_pool, 0o666)
    st.strata(orp_pool, "run", "--", "sh", "-c", f"mkdir {DATA} && chown postgres {DATA}")
    strata = [SYSTEM_PYTHON, "-m", "strata.cli", "--pool", orp_pool, "run", "--"]
    init = subprocess.run(as_postgres(*strata, f"{PG}/initdb", "-D", DATA, "-A", "trust"),
                          cwd=st.ROOT, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    hba = subprocess.run(as_postgres(*strata, "sh", "-c",
                                     f"echo 'host all all 10.0.0.0/24 trust' >> {DATA}/pg_hba.conf"),
                         cwd=st.ROOT, capture_output=True, text=True, timeout=60)
    assert hba.returncode == 0, hba.stderr
    return orp_pool


def kill_postgres(sig):
    pids = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            pass


def counters(d):
    return stats.read("tas", d.instance)


def start_postgres(procs, d, pool, port):
    p = start_postgres_cmd(as_postgres(SYSTEM_PYTHON, "-m", "kb.run", "-i", d.instance,
                                       "--pool", pool, "--shared-writers", "--",
                                       f"{PG}/postgres", "-D", DATA, "-p", str(port),
                                       "-c", "listen_addresses=*",
                                       "-c", "unix_socket_directories="),   # TCP only
                           st.ROOT)
    procs.append(p)
    return p


def client(d, tool, port, *args, timeout=300):
    return d.ns_run(f"{PG}/{tool}", "-h", "10.0.0.2", "-p", str(port), "-U", "postgres",
                    *args, timeout=timeout)


def sums(d, port):
    r = client(d, "psql", port, "-At", "-c", SUMS, "postgres")
    assert r.returncode == 0, r.stderr
    a, b, t, h, n = (int(x) for x in r.stdout.strip().split("|"))
    return (a, b, t, h), n


def test_postgres_pgbench_survives_kill_9(tas_daemon, procs, pg_pool):
    d, port = tas_daemon, 55432
    before = counters(d)
    pg = start_postgres(procs, d, pg_pool, port)
    r = client(d, "pgbench", port, "-i", "-s", "1", "postgres")
    assert r.returncode == 0, r.stderr
    r = client(d, "pgbench", port, "-n", "-c", "4", "-j", "2", "-t", "150", "postgres")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "number of transactions actually processed: 600/600" in r.stdout, r.stdout
    (a, b, t, h), n = sums(d, port)
    assert a == b == t == h and n == 600
    # every connection served by the backend forked for it
    grew = counters(d)["tcp_conns_claimed"] - before.get("tcp_conns_claimed", 0)
    assert grew >= 4 + 2

    # kill -9 every PostgreSQL process in the middle of a run
    bench = subprocess.Popen(["ip", "netns", "exec", d.netns, f"{PG}/pgbench", "-h", "10.0.0.2",
                              "-p", str(port), "-U", "postgres", "-n", "-c", "4", "-j", "2",
                              "-t", "100000", "postgres"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(bench)
    wait_until(lambda: sums(d, port)[1] >= n + 300, "pgbench under way")
    kill_postgres(signal.SIGKILL)    # (its children are session leaders of their own)
    pg.wait()
    bench.communicate(timeout=120)      # it fails: its connections are gone
    pg = start_postgres(procs, d, pg_pool, port)   # crash recovery
    (a, b, t, h), m = sums(d, port)
    assert a == b == t == h, "balances differ after recovery"
    assert m >= n + 300
    r = client(d, "pgbench", port, "-n", "-c", "2", "-t", "50", "postgres")
    assert r.returncode == 0 and "processed: 100/100" in r.stdout, r.stdout + r.stderr
    os.kill(pg.pid, signal.SIGTERM)
    pg.wait(timeout=60)
