"""Prefork servers on TAS: workers forked after listen() accept on the
listener they inherited.  Each worker joins the port's listeners in the
daemon (as with SO_REUSEPORT); new connections are spread over the
processes that accept, and a connection belongs to the worker that took it
(its buffers live in that worker's segment)."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from libtas_helpers import READ_ALL, ROOT, counters, finish, in_peer, nginx_serves
from test_libtas import NGINX_CONF as SINGLE_PROCESS_CONF

# No `user` line: nginx started as root runs its workers as nobody, which
# accept on the listener the root master made (on a low port that user may
# not listen on itself).
NGINX_CONF = (SINGLE_PROCESS_CONF
              .replace("master_process off;\nworker_processes 1;",
                       "master_process on;\nworker_processes 2;")
              .replace("access_log off;", "log_format bypid '$pid $status';\n"
                       "    access_log {d}/access.log bypid;")
              .replace("listen 8080", "listen 90"))


@pytest.fixture
def nobody_readable_dir():
    """pytest's tmp_path is 0700: nobody's workers could not read the files."""
    d = tempfile.mkdtemp(prefix="kb-nginx-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_nginx_master_and_two_workers(daemon, procs, nobody_readable_dir):
    d = nobody_readable_dir
    before = counters(daemon)
    # One connection per request: the daemon spreads them over the workers.
    nginx_serves(procs, daemon, d, NGINX_CONF, 90, "-H", "Connection: close")
    pids = {line.split()[0] for line in (d / "access.log").read_text().splitlines()}
    assert len(pids) == 2, f"requests served by {pids}: both workers should take connections"
    after = counters(daemon)
    assert after["tcp_listeners_joined"] - before.get("tcp_listeners_joined", 0) == 2
    # they joined as nobody, with the key only the master's children know
    joined_by_key = after.get("tcp_listeners_joined_by_key", 0)
    assert joined_by_key - before.get("tcp_listeners_joined_by_key", 0) == 2
    assert "accept4() failed" not in (d / "error.log").read_text()


# A prefork server whose master took a connection before any worker
# existed: the master listens, the client connects and sends its request,
# and only then are the workers forked.  The master never accepts; the
# connection (and the request it already holds) moves to a worker.
LATE_WORKERS = """
import ctypes, os, signal, socket, sys
ls = socket.socket()
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(16)
print("listening", flush=True)
sys.stdin.readline()                 # the client's request is in by now
kids = []
try:
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            # only the master holds the test's pipe: it sees the master's
            # end; and a worker dies with its master (PR_SET_PDEATHSIG), as
            # the test kills only the master if it fails
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
            c, _ = ls.accept()
            c.sendall(b"worker got " + c.recv(100))
            c.close()
            os._exit(0)
        kids.append(pid)
    print("forked", flush=True)
    done, status = os.wait()         # one worker served it, the other waits
    print("served", os.waitstatus_to_exitcode(status), flush=True)
finally:
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
"""

EARLY_CLIENT = READ_ALL + """
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=120)
s.sendall(b"early")
print("sent", flush=True)
got = []
read_all(s, got.append, 100)
print(b"".join(got).decode(), flush=True)
"""


def test_connection_taken_before_the_workers_moves_to_one(daemon, procs, tmp_path):
    before = counters(daemon)
    err = tmp_path / "server.err"      # a file: the workers hold a pipe open
    with open(err, "w") as f:
        srv = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance",
                                daemon.instance, "--", sys.executable, "-c", LATE_WORKERS,
                                "8091"], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=f)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening", err.read_text()
    cli = in_peer(procs, daemon, sys.executable, "-c", EARLY_CLIENT, "8091")
    assert cli.stdout.readline().strip() == "sent", cli.stderr.read()
    srv.stdin.write("fork\n")
    srv.stdin.flush()
    line = srv.stdout.readline().strip()
    assert line == "forked", f"{line!r}, exit {srv.poll()}: {err.read_text()}"
    assert finish(cli, "client").strip().splitlines()[-1] == "worker got early"
    out, _ = srv.communicate(timeout=120)
    assert srv.returncode == 0 and out.strip().splitlines()[-1] == "served 0", \
        out + err.read_text()
    assert "libtas:" not in err.read_text(), err.read_text()
    after = counters(daemon)
    assert after.get("tcp_conns_moved", 0) - before.get("tcp_conns_moved", 0) == 1
    assert after.get("flows_moved", 0) - before.get("flows_moved", 0) == 1
