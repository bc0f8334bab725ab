"""Servers that accept, then fork a process per connection (PostgreSQL,
Python's ForkingTCPServer, sshd), under tas-run: the child serves the
connection it inherited (its first use takes the flow over from the parent,
TAS_CTL_CLAIM) and the parent closes its copy at once (its FIN waits for the
children, TAS_CTL_FL_FORKED).  Kernel clients in the peer namespace."""
import errno
import json
import os
import subprocess
import sys

import pytest

from bindings._tasapp import lib
from libtas_helpers import ROOT, counters, tas_run
from tas.app import TasApp
from tasd import wait_until

# argv: port, connections, mode.  "echo": the child reads a line, answers
# with it and the sha256 of the bulk that follows (its length in the line);
# "idle": the child never touches the connection, writes argv[4] and exits;
# "exec": the child execs `sleep` (its copy of the socket closes on exec).
SERVER = r"""
import hashlib, os, signal, socket, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # children reaped by the kernel
s = socket.create_server(("0.0.0.0", port), backlog=64)
print("listening", flush=True)
for i in range(n):
    c, _ = s.accept()
    pid = os.fork()
    if pid == 0:
        s.close()
        if mode == "idle":
            open(sys.argv[4] + str(i), "w").close()
            os._exit(0)
        if mode == "exec":
            os.execv("/bin/sleep", ["sleep", "600"])
        line = b""
        while not line.endswith(b"\n"):
            line += c.recv(1)
        size = int(line.split()[1])
        h, got = hashlib.sha256(), 0
        while got < size:
            d = c.recv(65536)
            assert d, "EOF in the bulk"
            h.update(d)
            got += len(d)
        c.sendall(b"%d %s " % (os.getpid(), line.split()[0]) + h.hexdigest().encode() + b"\n")
        c.close()
        os._exit(0)
    c.close()                   # the parent's copy, at once
print("served", flush=True)
signal.pause()
"""

CLIENT = r"""
import hashlib, os, socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.create_connection(("10.0.0.2", port))
    bulk = os.urandom(size)
    s.sendall(b"conn%d %d\n" % (i, size) + bulk)
    reply = b"".join(iter(lambda: s.recv(4096), b""))     # up to the child's FIN
    pid, line, digest = reply.split()
    assert line == b"conn%d" % i, reply
    assert digest.decode() == hashlib.sha256(bulk).hexdigest(), "bulk changed"
    print(pid.decode(), flush=True)
    s.close()
"""


def test_forked_children_serve_what_the_parent_accepted(tas_daemon, procs):
    """Each connection is served by its own child, bytes intact, including
    a 4 MiB bulk sent at once (it arrives while the parent still owns the
    flow, and while its close waits); each ends with the child's FIN."""
    d, port, n = tas_daemon, 7460, 6
    before = counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), str(n), "echo")
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", CLIENT, str(port), str(n), str(4 << 20), timeout=120)
    assert out.returncode == 0, out.stderr
    pids = out.stdout.split()
    assert len(pids) == n and len(set(pids)) == n and str(srv.pid) not in pids
    assert srv.stdout.readline().strip() == "served"
    grew = lambda k: counters(d).get(k, 0) - before.get(k, 0)   # noqa: E731
    assert grew("tcp_conns_claimed") == n
    srv.kill()
    srv.communicate(timeout=30)


CLIENT_EOF = r"""
import os, socket, sys
port, n, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    s = socket.create_connection(("10.0.0.2", port))
    assert s.recv(1) == b"", "data from a child that sent nothing"
    print("eof", i, os.path.exists(marker + str(i)) if marker else "-", flush=True)
    s.close()
"""


def test_close_waits_for_a_child_that_holds_the_connection(tas_daemon, procs, tmp_path):
    """The parent closes at once, its child never uses the connection and
    exits later: the FIN comes after the child is gone (Linux's last
    close), not at the parent's close."""
    d, port, n = tas_daemon, 7461, 3
    marker = str(tmp_path / "child")
    before = counters(d)
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), str(n), "idle", marker)
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", CLIENT_EOF, str(port), str(n), marker, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:n] == [f"eof {i} True" for i in range(n)]
    grew = lambda k: counters(d).get(k, 0) - before.get(k, 0)   # noqa: E731
    assert grew("tcp_conns_claimed") == 0
    srv.kill()
    srv.communicate(timeout=30)


def test_a_child_that_execs_does_not_hold_the_close(tas_daemon, procs):
    """A child that execs another program (`sleep 600`) cannot use the TAS
    connection it inherited: the parent's close sends the FIN while the
    program still runs."""
    d, port = tas_daemon, 7462
    srv = tas_run(procs, d, sys.executable, "-c", SERVER, str(port), "1", "exec")
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", CLIENT_EOF, str(port), "1", "", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("eof 0")
    sleepers = subprocess.run(["pgrep", "-P", str(srv.pid), "-x", "sleep"],
                              capture_output=True, text=True).stdout.split()
    assert sleepers, "the exec'd child is gone: the test proves nothing"
    for pid in sleepers:
        subprocess.run(["kill", pid])
    srv.kill()
    srv.communicate(timeout=30)


# Accept one connection, then hold it.
HOLD = r"""
import signal, socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
print("accepted", flush=True)
signal.pause()
"""

PEER_HOLD = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
print("up", flush=True)
sys.stdin.readline()
"""


def server_and_peer(procs, d, port):
    """HOLD under tas-run, and a kernel peer connected to it."""
    srv = tas_run(procs, d, sys.executable, "-c", HOLD, str(port))
    assert srv.stdout.readline().strip() == "listening"
    cli = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", PEER_HOLD,
                            str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(cli)
    assert cli.stdout.readline().strip() == "up"
    return srv, cli


def test_only_a_descendant_may_claim(tas_daemon, procs):
    """A process that did not fork from the connection's owner cannot take
    it (EPERM), and the connection stays the owner's."""
    d, port = tas_daemon, 7463
    srv, cli = server_and_peer(procs, d, port)
    assert srv.stdout.readline().strip() == "accepted"
    rows = [f for f in tasctl_flows(d) if f["local_port"] == port and f["state"] == "ESTABLISHED"]
    assert len(rows) == 1 and rows[0]["pid"] == srv.pid
    before = counters(d).get("tcp_claims_refused", 0)
    with TasApp(d.instance) as thief:
        st, _ = thief.request(lib.TAS_CTL_CLAIM, flow_id=rows[0]["flow_id"])
    assert st == -errno.EPERM
    assert counters(d)["tcp_claims_refused"] == before + 1
    after = [f for f in tasctl_flows(d) if f["local_port"] == port and f["state"] == "ESTABLISHED"]
    assert after == rows
    cli.kill()
    cli.wait()
    srv.kill()
    srv.communicate(timeout=30)


def tasctl_flows(d):
    out = subprocess.run([sys.executable, "-m", "tas.ctl", "--instance", d.instance, "flows",
                          "--json"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out)["flows"]


# inetd style: the child puts the connection on its stdin and stdout and
# execs another program (under the same LD_PRELOAD).  That program's libtas
# reads its fork marker (which descriptors are inherited connections) and
# gives it a socketpair there, relayed to the connection by a child of its
# own: stdio's buffered writes (bash's echo) never pass through libtas.
# argv: port, connections, listener family ("inet", or "inet6": dual-stack
# on ::), the service's command line.
INETD = r"""
import os, signal, socket, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
fam = socket.AF_INET6 if sys.argv[3] == "inet6" else socket.AF_INET
s = socket.create_server(("::" if fam == socket.AF_INET6 else "0.0.0.0", int(sys.argv[1])),
                         family=fam, dualstack_ipv6=fam == socket.AF_INET6)
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = s.accept()
    if os.fork() == 0:
        os.dup2(c.fileno(), 0)
        os.dup2(c.fileno(), 1)
        os.execv(sys.argv[4], sys.argv[4:])
    c.close()
print("served", flush=True)
signal.pause()
"""
SERVICE = ["/bin/bash", "-c", 'read line; echo "$$ $line"']


# n connections, each sends a line and prints the reply up to the FIN
LINE_CLIENT = ("import socket, sys\n"
               "for i in range(int(sys.argv[2])):\n"
               "    s = socket.create_connection(('10.0.0.2', int(sys.argv[1])))\n"
               "    s.sendall(b'req%d\\n' % i)\n"
               "    r = b''\n"
               "    while (d := s.recv(100)):\n"
               "        r += d\n"
               "    print(r.decode().strip(), flush=True)\n")


def serve_lines(procs, d, port, n, server, *args):
    """server (under tas-run; argv: port, n, args, SERVICE) hands each of n
    connections to SERVICE in a process of its own: each reply names its own
    pid and the request, and each connection was taken over by that
    process."""
    before = counters(d).get("tcp_conns_claimed", 0)
    srv = tas_run(procs, d, sys.executable, "-c", server, str(port), str(n), *args, *SERVICE)
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", LINE_CLIENT, str(port), str(n), timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:n]
    assert [ln.split()[1] for ln in lines] == [f"req{i}" for i in range(n)], out.stdout
    assert len({ln.split()[0] for ln in lines}) == n
    assert srv.stdout.readline().strip() == "served"
    assert counters(d)["tcp_conns_claimed"] - before == n
    return srv


def test_inetd_style_child_execs_a_service(tas_daemon, procs):
    srv = serve_lines(procs, tas_daemon, 7464, 3, INETD, "inet")
    srv.kill()
    srv.communicate(timeout=30)


# what the service sees of its stdin: family, peer address and port, own
# address and port
WHO = [sys.executable, "-c",
       "import socket; s = socket.socket(fileno=0); "
       "print(s.family.name, *s.getpeername()[:2], *s.getsockname()[:2], flush=True)"]
PEER_WHO = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
print(*s.getsockname(), flush=True)
print(b"".join(iter(lambda: s.recv(100), b"")).decode().strip(), flush=True)
"""


@pytest.mark.parametrize("family", ["inet", "inet6"])
def test_a_relayed_service_sees_the_tcp_addresses(tas_daemon, procs, family):
    """getpeername, getsockname and SO_DOMAIN of a service's relayed stdin
    (a socketpair end) answer for the TCP connection, as inetd services
    expect (before: AF_UNIX and no address)."""
    d, port = tas_daemon, 7466 + (family == "inet6")
    srv = tas_run(procs, d, sys.executable, "-c", INETD, str(port), "1", family, *WHO)
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", PEER_WHO, str(port), timeout=120)
    assert out.returncode == 0, out.stderr
    (cip, cport), seen = out.stdout.split("\n")[0].split(), out.stdout.split("\n")[1].split()
    mapped = "::ffff:" if family == "inet6" else ""
    assert seen == ["AF_INET6" if family == "inet6" else "AF_INET", mapped + cip, cport,
                    mapped + "10.0.0.2", str(port)], out.stdout
    srv.kill()
    srv.communicate(timeout=30)


def test_git_daemon_serves_a_clone(tas_daemon, procs, tmp_path):
    """git daemon, unmodified: it forks per connection, the child execs
    `git daemon --serve` on the connection, which forks and execs
    upload-pack; each writes through stdio."""
    d, port = tas_daemon, 9419
    repo = tmp_path / "srv" / "repo.git"
    work = tmp_path / "work"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", "--bare", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "f").write_bytes(os.urandom(300000))
    subprocess.run([*git, "-C", str(work), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "one"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repo), "HEAD:refs/heads/main"],
                   check=True)
    gd = tas_run(procs, d, "git", "daemon", "--reuseaddr", "--export-all",
                 f"--base-path={tmp_path / 'srv'}", f"--port={port}", "--listen=0.0.0.0")
    clone = tmp_path / "clone"
    wait_until(lambda: d.ns_run("git", "clone", "-q", f"git://10.0.0.2:{port}/repo.git",
                                str(clone), timeout=60).returncode == 0, "a clone")
    assert (clone / "f").read_bytes() == (work / "f").read_bytes()
    # `git daemon` runs git-daemon as its child: stop both
    subprocess.run(["pkill", "-P", str(gd.pid)])
    gd.kill()
    gd.communicate(timeout=30)


# Python's subprocess starts programs with vfork, and its child closes every
# descriptor above 2 with close_range before the exec.
SPAWN = r"""
import socket, subprocess, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = s.accept()
    subprocess.run(sys.argv[3:], stdin=c, stdout=c, check=True, timeout=60)
    c.close()
print("served", flush=True)
"""


def test_subprocess_serves_an_inherited_connection(tas_daemon, procs):
    """subprocess.run(service, stdin=conn, stdout=conn) for each accepted
    connection: libtas makes vfork a fork, so the child gets a fork marker,
    close_range leaves it open, and the exec'd bash takes the connection
    over (before: the service got the placeholder and EBADF)."""
    srv = serve_lines(procs, tas_daemon, 7465, 3, SPAWN)
    srv.communicate(timeout=30)


# A connection the server leaves inheritable (a C server without
# SOCK_CLOEXEC) while a forked child execs argv[2:]; once the program says
# so on fd 9, the server writes to it ("still mine") and closes it.
INHERITED = r"""
import os, socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
os.set_inheritable(c.fileno(), True)
r, w = os.pipe()
if os.fork() == 0:
    os.dup2(w, 9)                       # the program says "started" on fd 9
    os.execv(sys.argv[2], [a.replace("FD", str(c.fileno())) for a in sys.argv[2:]])
os.close(w)
os.read(r, 100)
try:
    c.sendall(b"still mine\n")
    print("sent", flush=True)
except OSError as e:
    print("error", e.errno, flush=True)
c.close()
os.wait()
"""
PEER_READ = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
s.settimeout(60)
s.sendall(sys.argv[2].encode())
print(repr(b"".join(iter(lambda: s.recv(100), b""))), flush=True)
"""


def test_a_helper_that_inherits_a_connection_leaves_it_to_the_parent(tas_daemon, procs):
    """The exec'd helper never touches the inherited connection (above
    stderr): the parent keeps it and its bytes reach the peer, as on Linux.
    Before, the helper's libtas relayed every inherited connection at once,
    the parent's sendall succeeded and its bytes went nowhere."""
    d, port = tas_daemon, 7468
    helper = [sys.executable, "-c", "import os, time; os.write(9, b'up'); time.sleep(1)"]
    srv = tas_run(procs, d, sys.executable, "-c", INHERITED, str(port), *helper)
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", PEER_READ, str(port), "", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr(b"still mine\n")
    assert srv.communicate(timeout=30)[0].split() == ["sent"]


def test_an_exec_d_program_takes_an_inherited_connection_when_it_uses_it(tas_daemon, procs):
    """The exec'd program reads the inherited descriptor (above stderr): its
    first use takes the connection over, it answers, and the parent's write
    after that fails (ECONNRESET) instead of vanishing: the daemon tells the
    parent before it answers the program's claim, and a send looks for the
    daemon's messages first."""
    d, port = tas_daemon, 7469
    prog = [sys.executable, "-c",
            "import os, socket; s = socket.socket(fileno=FD); got = s.recv(100); "
            "os.write(9, b'up'); s.sendall(b'child ' + got); s.close()"]
    srv = tas_run(procs, d, sys.executable, "-c", INHERITED, str(port), *prog)
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", PEER_READ, str(port), "hello", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr(b"child hello")
    assert srv.communicate(timeout=30)[0].split() == ["error", str(errno.ECONNRESET)]
