"""close_range/closefrom under tas-run (os.closerange, daemons closing every
descriptor, Python's subprocess child).  The TAS sockets in the range are
closed as close() closes them: before, the kernel reused their numbers
under libtas's table, and a file opened at one was taken for the socket.
libtas's own descriptors in the range stay open.  Kernel peers in the
daemon's peer namespace."""
import sys

from libtas_helpers import tas_run

# A connection is accepted, its number closed by close_range (os.closerange)
# or closefrom (ctypes), and a file opened at the same number: its bytes go
# to the file, and the peer sees the connection end without them.
REUSE = r"""
import ctypes, os, socket, sys
port, how, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_server(("0.0.0.0", port))
print("listening", flush=True)
c, _ = s.accept()
n = c.detach()
if how == "closefrom":
    s.detach()                              # closefrom takes the listener too
    ctypes.CDLL(None).closefrom(n)
else:
    os.closerange(n, n + 1)
f = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
assert f == n, (f, n)                       # the kernel reused the number
assert os.write(f, b"for the file only") == 17
os.close(f)
print("done", flush=True)
"""

PEER = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
s.settimeout(60)
got = b"".join(iter(lambda: s.recv(4096), b""))
print(repr(got), flush=True)
"""


def reuse_case(d, procs, tmp_path, port, how):
    path = tmp_path / "f"
    srv = tas_run(procs, d, sys.executable, "-c", REUSE, str(port), how, str(path))
    assert srv.stdout.readline().strip() == "listening"
    out = d.ns_run(sys.executable, "-c", PEER, str(port), timeout=120)
    assert out.returncode == 0, out.stderr
    assert srv.stdout.readline().strip() == "done", srv.communicate(timeout=30)
    assert out.stdout.strip() == "b''"     # the FIN, none of the file's bytes
    assert path.read_bytes() == b"for the file only"
    srv.communicate(timeout=30)


def test_closerange_of_a_connection_frees_its_number(tas_daemon, procs, tmp_path):
    reuse_case(tas_daemon, procs, tmp_path, 7470, "closerange")


def test_closefrom_of_a_connection_frees_its_number(tas_daemon, procs, tmp_path):
    reuse_case(tas_daemon, procs, tmp_path, 7471, "closefrom")


# A program that closes every descriptor above 2 after its first TAS socket
# (as daemons do) keeps libtas's attachment: it listens and serves after.
CLOSE_ALL = r"""
import os, socket, sys
socket.socket().close()                      # attaches libtas
os.closerange(3, 65536)
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
print("served", flush=True)
"""


def test_libtas_keeps_its_own_descriptors_across_closerange(tas_daemon, procs):
    d, port = tas_daemon, 7472
    srv = tas_run(procs, d, sys.executable, "-c", CLOSE_ALL, str(port))
    assert srv.stdout.readline().strip() == "listening"
    code = ("import socket, sys\n"
            "s = socket.create_connection(('10.0.0.2', int(sys.argv[1])))\n"
            "s.sendall(b'ping')\n"
            "print(s.recv(100).decode(), flush=True)\n")
    out = d.ns_run(sys.executable, "-c", code, str(port), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PING"
    assert srv.stdout.readline().strip() == "served"
    srv.communicate(timeout=30)


# A wildcard listener's kernel twin (the host's own clients reach the
# program through it) is libtas's own descriptor: a close_range over every
# number above the listener's leaves it, and a local client still connects.
TWIN = r"""
import os, socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
os.closerange(s.fileno() + 1, 65536)
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
a, _ = s.accept()
c.sendall(b"via the twin")
print(a.recv(100).decode(), flush=True)
"""


def test_a_listeners_kernel_twin_survives_closerange(tas_daemon, procs):
    srv = tas_run(procs, tas_daemon, sys.executable, "-c", TWIN, "7473")
    out, err = srv.communicate(timeout=60)
    assert out.strip() == "via the twin", err
