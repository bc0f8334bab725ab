"""Socket semantics a new user's programs rely on, under tas-run against a
Linux peer in the namespace, each as Linux answers it:

- bind() to the daemon's own address (nginx `listen 10.0.0.2:80`, a client
  choosing its source address) is a TAS socket; it became a kernel one
  that cannot have that address (EADDRNOTAVAIL);
- bind() to port 0 then listen() takes an ephemeral port, which
  getsockname names and the peer reaches (listen failed with EINVAL).
"""
import sys

from libtas_helpers import finish, in_peer, tas_run

ECHO = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
"""

OWN_ADDRESS = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.2", int(sys.argv[1])))
s.listen(1)
print("listening", s.getsockname()[0], flush=True)
c, peer = s.accept()
c.sendall(b"got " + c.recv(100))
c.close()
cl = socket.socket()
cl.bind(("10.0.0.2", 0))                 # a client choosing its source address
cl.connect(("10.0.0.1", int(sys.argv[2])))
cl.sendall(b"from 10.0.0.2")
print(cl.getsockname()[0], cl.recv(100).decode(), flush=True)
"""


def test_bind_to_the_daemons_address(tas_daemon, procs):
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO, "7601")
    assert echo.stdout.readline() == "listening\n"
    srv = tas_run(procs, d, sys.executable, "-c", OWN_ADDRESS, "7600", "7601")
    assert srv.stdout.readline().split() == ["listening", "10.0.0.2"], srv.stderr.read()
    got = d.ns_run(sys.executable, "-c",
                   "import socket; s = socket.create_connection(('10.0.0.2', 7600)); "
                   "s.sendall(b'hi'); print(s.recv(100).decode())", timeout=60)
    assert got.stdout.strip() == "got hi", got.stderr
    assert finish(srv, "server").split() == ["10.0.0.2", "from", "10.0.0.2"]


PORT_ZERO = """
import socket
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"port zero " + c.recv(100))
c.close()
"""


def test_listen_on_port_zero_takes_an_ephemeral_port(tas_daemon, procs):
    d = tas_daemon
    srv = tas_run(procs, d, sys.executable, "-c", PORT_ZERO)
    port = int(srv.stdout.readline())
    assert 32768 <= port <= 60999, srv.stderr.read()
    got = d.ns_run(sys.executable, "-c",
                   f"import socket; s = socket.create_connection(('10.0.0.2', {port})); "
                   "s.sendall(b'ok'); print(s.recv(100).decode())", timeout=60)
    assert got.stdout.strip() == "port zero ok", got.stderr
    finish(srv, "server")
