"""Socket semantics a new user's programs rely on, under tas-run against a
Linux peer in the namespace, each as Linux answers it:

- bind() to the daemon's own address (nginx `listen 10.0.0.2:80`, a client
  choosing its source address) is a TAS socket; it became a kernel one
  that cannot have that address (EADDRNOTAVAIL);
- bind() to port 0 then listen() takes an ephemeral port, which
  getsockname names and the peer reaches (listen failed with EINVAL);
- SO_RCVTIMEO / SO_SNDTIMEO bound blocking recv, accept, send and connect
  (EAGAIN; connect: EINPROGRESS); they were accepted and ignored, and a
  recv waited forever;
- a signal whose handler has SA_RESTART does not interrupt a blocking recv
  or accept, one without it does (EINTR); every signal gave EINTR.
"""
import json
import sys

from libtas_helpers import ECHO_SEQUENTIAL, finish, in_peer, tas_run


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
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7601")
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


TIMEOUTS = """
import ctypes, errno, json, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
tv = struct.pack("ll", 0, 300000)
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
out["get"] = list(struct.unpack("ll", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)))
buf = ctypes.create_string_buffer(100)
# nothing comes: the raw recv (Python's own would poll) times out
r = libc.recv(s.fileno(), buf, 100, 0)
out["recv"] = [r, errno.errorcode.get(ctypes.get_errno())]
s.sendall(b"echo")
r = libc.recv(s.fileno(), buf, 100, 0)
out["recv_data"] = buf.raw[:r].decode()
# the peer echoes but never reads more than it writes back: fill the pipe
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
big = ctypes.create_string_buffer(1 << 20)
sent, err = 0, None
for _ in range(200):
    r = libc.send(s.fileno(), big, 1 << 20, 0)
    if r < 0:
        err = errno.errorcode.get(ctypes.get_errno())
        break
    sent += r
out["send"] = [sent > 0, err]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[2])))
ls.listen(1)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
r = libc.accept(ls.fileno(), None, None)
out["accept"] = [r, errno.errorcode.get(ctypes.get_errno())]
print(json.dumps(out), flush=True)
"""


def test_so_rcvtimeo_and_so_sndtimeo_bound_blocking_calls(tas_daemon, procs):
    """Against the same program on Linux: recv and accept EAGAIN after the
    timeout, send EAGAIN once the pipe is full (the peer echoes into a
    receive buffer nobody reads)."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7602")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", TIMEOUTS, "7602", "7603")
    out = json.loads(finish(cli, "client"))
    assert out == {"get": [0, 300000], "recv": [-1, "EAGAIN"], "recv_data": "echo",
                   "send": [True, "EAGAIN"], "accept": [-1, "EAGAIN"]}


SIGNALS = """
import ctypes, errno, json, os, signal, socket, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
signal.signal(signal.SIGINT, signal.SIG_DFL)     # Python's own handler has no SA_RESTART
signal.signal(signal.SIGALRM, lambda *a: None)
rd, wr = os.pipe()
os.set_blocking(wr, False)
signal.set_wakeup_fd(wr)         # written by the C handler as the signal comes
out = {}
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
buf = ctypes.create_string_buffer(100)
for restart in (True, False):
    signal.siginterrupt(signal.SIGALRM, not restart)
    def late():
        os.read(rd, 1)           # the signal has come: what the echo sends
        s.sendall(b"late")       # back arrives after it
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])   # inherited by the thread:
    t = threading.Thread(target=late)                          # the main thread takes it
    t.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGALRM])
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    r = libc.recv(s.fileno(), buf, 100, 0)
    e = ctypes.get_errno()
    out["restart" if restart else "interrupt"] = buf.raw[:r].decode() if r > 0 \\
        else errno.errorcode.get(e)
    t.join()
    if r < 0:
        assert s.recv(100) == b"late"
print(json.dumps(out), flush=True)
"""


def test_sa_restart_restarts_a_blocking_recv(tas_daemon, procs):
    """The same program on Linux prints {"restart": "late", "interrupt": "EINTR"}."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7604")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", SIGNALS, "7604")
    assert json.loads(finish(cli, "client")) == {"restart": "late", "interrupt": "EINTR"}


FORKING = """
import os, socket
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 7605))
ls.listen(1)
print("listening", flush=True)
c, addr = ls.accept()
pid = os.fork()
if pid == 0:
    # as ncat -l --sh-exec's child: name the client first, then serve it
    peer = c.getpeername()
    mine = c.getsockname()
    c.sendall(f"child: {peer[0]} {peer[1] == addr[1]} {mine}".encode())
    c.close()
    os._exit(0)
c.close()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_a_forked_child_names_an_inherited_connection(tas_daemon, procs):
    """getpeername in a child on a connection it inherited and has not used
    yet answers the parent's addresses, as on Linux; it failed with
    ENOTCONN (ncat -l --sh-exec quit: "getpeername failed")."""
    d = tas_daemon
    srv = tas_run(procs, d, sys.executable, "-c", FORKING)
    assert srv.stdout.readline() == "listening\n"
    got = d.ns_run(sys.executable, "-c",
                   "import socket; s = socket.create_connection(('10.0.0.2', 7605)); "
                   "print(s.recv(200).decode())", timeout=60)
    assert got.stdout.strip() == "child: 10.0.0.1 True ('10.0.0.2', 7605)", got.stderr
    assert finish(srv, "server").strip() == "0"


URGENT = """
import errno, json, socket, sys
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
out = {}
s.sendall(b"hello")
while len(s.recv(5, socket.MSG_PEEK)) < 5:      # until the echo is there
    pass
try:
    out["recv_oob"] = s.recv(10, socket.MSG_OOB).decode()
except OSError as e:
    out["recv_oob"] = errno.errorcode.get(e.errno)
out["recv"] = s.recv(10).decode()
try:
    out["send_oob"] = s.send(b"!", socket.MSG_OOB)
except OSError as e:
    out["send_oob"] = e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP)
s.sendall(b"tail")
out["after"] = s.recv(10).decode()
print(json.dumps(out), flush=True)
"""


def test_msg_oob_takes_no_ordinary_bytes(tas_daemon, procs):
    """recv(MSG_OOB) with no urgent data fails with EINVAL, as on Linux; it
    read the ordinary bytes as urgent ones, and the next recv waited for
    bytes already taken.  send(MSG_OOB) is refused (TAS sends no urgent
    data) rather than sending in line a byte a Linux peer does not see."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7606")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", URGENT, "7606")
    assert json.loads(finish(cli, "client")) == {"recv_oob": "EINVAL", "recv": "hello",
                                                 "send_oob": True, "after": "tail"}


STOP_ACCEPT = """
import errno, json, select, socket, sys, threading, time
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(8)
out = {}
def accept_loop():
    try:
        ls.accept()
        out["accept"] = "accepted"
    except OSError as e:
        out["accept"] = errno.errorcode.get(e.errno)
t = threading.Thread(target=accept_loop)
t.start()
p = select.poll()
p.register(ls, select.POLLIN)
time.sleep(0.2)                  # (not needed for the outcome: accept before or after)
ls.shutdown(socket.SHUT_RDWR)    # as servers stop their accept threads
t.join()
out["poll"] = bool(p.poll(0)[0][1] & select.POLLHUP)
ls.listen(8)                     # listening again, as Linux allows
print("again", flush=True)
c, _ = ls.accept()
out["again"] = c.recv(10).decode()
print(json.dumps(out), flush=True)
"""


def test_shutdown_of_a_listener_wakes_its_accept(tas_daemon, procs):
    """shutdown(SHUT_RDWR) on a listener another thread waits on in accept:
    the accept fails with EINVAL and poll says POLLHUP, as on Linux; the
    socket listens again after listen().  It answered ENOTCONN and the
    accept waited forever."""
    d = tas_daemon
    srv = tas_run(procs, d, sys.executable, "-c", STOP_ACCEPT, "7607")
    assert srv.stdout.readline() == "again\n", srv.stderr.read()
    got = d.ns_run(sys.executable, "-c",
                   "import socket; s = socket.create_connection(('10.0.0.2', 7607)); "
                   "s.sendall(b'back')", timeout=60)
    assert got.returncode == 0, got.stderr
    assert json.loads(finish(srv, "server")) == {"accept": "EINVAL", "poll": True,
                                                 "again": "back"}


ZERO = """
import errno, json, socket, sys
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
out = {"send0": s.send(b"")}
s.sendall(b"x")
out["recv"] = s.recv(10).decode()
s.shutdown(socket.SHUT_WR)
try:
    out["send0_after_shut"] = s.send(b"")
except OSError as e:
    out["send0_after_shut"] = errno.errorcode.get(e.errno)
print(json.dumps(out), flush=True)
"""


def test_a_write_of_zero_bytes_returns_zero(tas_daemon, procs):
    """send of 0 bytes returns 0 (it returned -1 with errno 0: "OSError:
    [Errno 0] Error"), and EPIPE once the socket is shut for writing, as on
    Linux."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7608")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", ZERO, "7608")
    assert json.loads(finish(cli, "client")) == {"send0": 0, "recv": "x",
                                                 "send0_after_shut": "EPIPE"}


def test_a_connect_from_a_bound_port_says_the_port_is_not_used(tas_daemon, procs):
    """TAS picks the local port of every connect: a client bound to one
    (FTP's port 20, rsh's reserved ports) still connects, from another
    port, and libtas says so on stderr instead of changing it silently."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7609")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c",
                  "import socket; c = socket.socket(); c.bind(('0.0.0.0', 45123)); "
                  "c.connect(('10.0.0.1', 7609)); c.sendall(b'hi'); print(c.recv(10).decode())")
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0 and out.strip() == "hi", err
    assert "bound to port 45123: TAS chooses the local port" in err


PASS_FD = """
import errno, socket, sys
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
a, b = socket.socketpair(socket.AF_UNIX)
try:
    socket.send_fds(a, [b"x"], [s.fileno()])
    print("passed")
except OSError as e:
    print(errno.errorcode.get(e.errno))
socket.send_fds(a, [b"y"], [a.fileno()])       # a kernel descriptor still goes
print(socket.recv_fds(b, 10, 1)[0].decode())
s.sendall(b"still mine")
print(s.recv(100).decode())
"""


def test_passing_a_tas_socket_with_scm_rights_fails_loudly(tas_daemon, procs):
    """A TAS socket sent over a Unix socket (SCM_RIGHTS) arrived as its
    placeholder, an O_PATH descriptor of /dev/null: the receiver got EBADF
    on every use while the sender's sendmsg had succeeded.  Now sendmsg
    fails with EOPNOTSUPP and libtas says why; the connection stays the
    sender's."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7610")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", PASS_FD, "7610")
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert out.split("\n")[:3] == ["ENOTSUP", "y", "still mine"]   # (EOPNOTSUPP)
    assert "is a TAS socket, which cannot be passed to another process" in err


SHUT_POLL = """
import json, select, socket, sys
port = int(sys.argv[1])
def revents(s):
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLOUT | select.POLLRDHUP)
    return p.poll(10000)[0][1]
a = socket.create_connection(("10.0.0.1", port))
a.shutdown(socket.SHUT_WR)
b = socket.create_connection(("10.0.0.1", port))
b.shutdown(socket.SHUT_RDWR)
print(json.dumps({"shut_wr_pollout": bool(revents(a) & select.POLLOUT),
                  "shut_rdwr": revents(b)}))
"""


def test_poll_after_shutdown_as_linux(tas_daemon, procs):
    """After shutdown(SHUT_WR) the socket is writable (a write fails at once
    with EPIPE); after SHUT_RDWR poll says POLLIN|POLLOUT|POLLHUP|POLLRDHUP
    (8213), as Linux's tcp_poll.  TAS said POLLIN alone: no POLLOUT once
    shut for writing, no POLLHUP unless the peer had sent its FIN."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7611")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", SHUT_POLL, "7611")
    assert json.loads(finish(cli, "client")) == {"shut_wr_pollout": True, "shut_rdwr": 8213}


OUTQ = """
import fcntl, json, socket, struct, sys, termios
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
q = lambda req: struct.unpack("i", fcntl.ioctl(s, req, bytes(4)))[0]
s.sendall(b"z" * 100000)
got = 0
while got < 100000:              # all echoed: all acknowledged
    got += len(s.recv(65536))
while q(termios.TIOCOUTQ) != 0:  # (the last ACK may trail the echo)
    pass
print(json.dumps({"outq": 0, "atmark": q(0x8905), "inq": q(termios.FIONREAD)}))
"""


def test_siocoutq_and_siocatmark(tas_daemon, procs):
    """SIOCOUTQ (TIOCOUTQ: bytes not acknowledged yet) and SIOCATMARK
    answer as on Linux; they failed with ENOTTY."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7612")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", OUTQ, "7612")
    assert json.loads(finish(cli, "client")) == {"outq": 0, "atmark": 0, "inq": 0}


STDIO = """
import ctypes, json, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
for f in ("fputs", "fflush", "fgets", "fileno", "fclose"):
    getattr(libc, f).argtypes = {"fputs": [ctypes.c_char_p, ctypes.c_void_p],
                                 "fgets": [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
                                 }.get(f, [ctypes.c_void_p])
libc.fgets.restype = ctypes.c_char_p
s = socket.create_connection(("10.0.0.1", int(sys.argv[1])))
fd = s.detach()
f = libc.fdopen(fd, b"r+")
out = {"fdopen": bool(f), "errno": ctypes.get_errno()}
if f:
    out["fileno"] = libc.fileno(f) == fd
    libc.fputs(b"hello stdio\\n", f)
    out["fflush"] = libc.fflush(f)
    buf = ctypes.create_string_buffer(100)
    out["fgets"] = (libc.fgets(buf, 100, f) or b"").decode()
    out["fclose"] = libc.fclose(f)
print(json.dumps(out), flush=True)
"""


def test_stdio_over_a_tas_socket(tas_daemon, procs):
    """A C program that wraps its socket in a FILE (fdopen, fputs, fflush,
    fgets, through ctypes here) talks over TAS: glibc's stdio does its own
    system calls, which never reach the shim, and fdopen failed with
    EINVAL on the socket's placeholder.  Its stream is now a cookie stream
    over the shim's recv and send; fileno gives the descriptor back."""
    d = tas_daemon
    echo = in_peer(procs, d, sys.executable, "-u", "-c", ECHO_SEQUENTIAL, "7613")
    assert echo.stdout.readline() == "listening\n"
    cli = tas_run(procs, d, sys.executable, "-c", STDIO, "7613")
    assert json.loads(finish(cli, "client")) == {
        "fdopen": True, "errno": 0, "fileno": True, "fflush": 0, "fgets": "hello stdio\n",
        "fclose": 0}
