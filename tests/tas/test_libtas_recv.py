"""libtas's receive path (the core's struct tas_rx, shared with tas/app.py)
seen through the socket API: MSG_PEEK reads without consuming (and across
the ring's wrap), FIONREAD counts what is there, MSG_WAITALL waits for all
of it, and end of stream comes after the last byte.  A plain-`socket`
Python client runs under tas-run against a Linux server in the peer
namespace."""
import json
import sys

from libtas_helpers import counters, finish, in_peer, tas_run

SERVER = """
import random, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hello world" + random.Random(7).randbytes(int(sys.argv[2])))
c.close()
"""

CLIENT = """
import fcntl, hashlib, json, random, socket, struct, sys, termios
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("10.0.0.1", port))
while len(s.recv(11, socket.MSG_PEEK)) < 11:   # until the greeting is there
    pass
out = {"peek": s.recv(11, socket.MSG_PEEK).decode()}
out["fionread"] = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\\0" * 4))[0]
out["first"] = s.recv(6).decode()
out["waitall"] = s.recv(5, socket.MSG_WAITALL).decode()
h = hashlib.sha256()
got = 0
while got < n:
    # a peek, then the same bytes read: they must agree (the ring wraps
    # several times over n bytes)
    p = s.recv(70000, socket.MSG_PEEK)
    d = s.recv(len(p), socket.MSG_WAITALL)
    assert d == p, (got, len(p), len(d))
    h.update(d)
    got += len(d)
out["same"] = h.hexdigest() == hashlib.sha256(random.Random(7).randbytes(n)).hexdigest()
out["eof"] = s.recv(10) == b""
print(json.dumps(out))
"""


def test_peek_fionread_waitall_eof(daemon, procs):
    n = 3 * 1024 * 1024
    before = counters(daemon)
    srv = in_peer(procs, daemon, sys.executable, "-u", "-c", SERVER, "7201", str(n))
    assert srv.stdout.readline() == "listening\n"
    cli = tas_run(procs, daemon, sys.executable, "-c", CLIENT, "7201", str(n))
    out = json.loads(finish(cli, "client"))
    assert out == {"peek": "hello world", "fionread": out["fionread"], "first": "hello ",
                   "waitall": "world", "same": True, "eof": True}
    assert out["fionread"] >= 11
    srv.communicate(timeout=60)
    assert counters(daemon)["tcp_rx_bytes"] - before["tcp_rx_bytes"] >= n
