"""System calls libtas makes for a short connection: an unmodified epoll
server (bench/rpc_echo.c) under tas-run, traced with strace, serves
connections from a kernel client in the peer namespace, one request each.

libtas once looked at its control socket with a poll() on every pass
through its engine (about twelve per connection, a message coming there
rarely), and every epoll_wait that found TAS events asked the kernel's set
too (epoll_wait with timeout 0) although it held no kernel fd.  Both were
on the way from the client's request to its reply, on a CPU the client
shares.  Now the daemon counts what it sends in the segment's header and
libtas polls only when that moved, and a set with no kernel fd is not
asked (one whose only kernel fd is a listener's kernel twin, every 64th
time)."""
import os
import signal
import subprocess
import sys

from libtas_helpers import READ_ALL, ROOT, finish, in_peer

RPC_ECHO = os.path.join(ROOT, "build", "bench", "rpc_echo")
PORT = 7460
N = 300

CLIENT = READ_ALL + r"""
import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
    s.sendall(b"%08d" % i)
    got = []
    read_all(s, got.append, 8, 8)
    assert b"".join(got) == b"%08d" % i, got
    s.close()
print("done", flush=True)
"""


def strace_counts(path):
    """{system call: calls} from strace -c's table."""
    counts = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1].isidentifier():
            counts[f[-1]] = int(f[3])
    return counts


def test_short_connections_poll_no_control_socket_nor_empty_kernel_set(daemon, procs,
                                                                         tmp_path):
    out = tmp_path / "strace.txt"
    # tas-run execs the server: strace follows it, and strace itself runs
    # without libtas.
    srv = subprocess.Popen(
        ["strace", "-f", "-c", "-o", str(out), "-e", "trace=poll,ppoll,epoll_wait",
         sys.executable, "-m", "tas.run", "--instance", daemon.instance, "--", RPC_ECHO,
         "server", str(PORT)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().startswith("listening")
    cli = in_peer(procs, daemon, sys.executable, "-c", CLIENT, str(PORT), str(N))
    assert finish(cli, "client").strip() == "done"
    # strace's child is the server (tas-run execs it); strace writes its
    # table once that ends (terminated itself, strace would only detach).
    (server_pid,) = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True,
                                   text=True, check=True).stdout.split()
    os.kill(int(server_pid), signal.SIGTERM)
    srv.communicate(timeout=60)
    counts = strace_counts(out)
    # The server sleeps in ppoll between connections (its epoll set holds
    # only TAS sockets and the listener): that one stays.
    assert counts.get("ppoll", 0) > 0, counts
    # Before: about 12 polls and 2.6 epoll_waits per connection.  Now a few
    # at attach (the LISTEN request and its replies) and when woken.
    assert counts.get("poll", 0) < N // 10, counts
    # The listener's kernel twin (for this host's clients) is the set's only
    # kernel fd: asked only every 64th wait that found TAS events.
    assert counts.get("epoll_wait", 0) < N // 10, counts
