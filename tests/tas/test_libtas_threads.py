"""Multi-threaded servers under tas-run: memcached, unmodified (an accept
thread hands connections to worker threads, each waiting in its own
epoll).  One libtas app, one notification queue: whichever thread reads it
applies every thread's notifications and must wake the others whose
sockets became ready.  A thread that spun before sleeping was no sleeper
meanwhile; it slept a whole 20 ms slice with a ready socket, on about one
request in eight (memcached SET p90 20 ms against 30 us).  libtas counts
such waits (`wakeups_late`): none here, and every value comes back."""
import subprocess
import sys

from bindings import stats
from libtas_helpers import tas_run
from tasd import wait_until

CLIENT = r"""
import os, socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def reply(end):
    r = b""
    while not r.endswith(end):
        d = s.recv(65536)
        assert d, "EOF"
        r += d
    return r
me = sys.argv[3].encode()             # each client its own keys
for i in range(int(sys.argv[2])):
    v = os.urandom(100 + i % 3000)
    s.sendall(b"set %sk%d 0 0 %d\r\n" % (me, i, len(v)) + v + b"\r\n")
    r = reply(b"\r\n")
    assert r == b"STORED\r\n", r
    s.sendall(b"get %sk%d\r\n" % (me, i))
    r = reply(b"END\r\n")
    assert r == b"VALUE %sk%d 0 %d\r\n" % (me, i, len(v)) + v + b"\r\nEND\r\n", (i, r[:60])
print("ok", flush=True)
"""


def test_memcached_threads_wake_each_other(tas_daemon, procs):
    d, port = tas_daemon, 11411
    mc = tas_run(procs, d, "memcached", "-u", "nobody", "-p", str(port), "-U", "0",
                 "-t", "2", "-l", "0.0.0.0")
    wait_until(lambda: d.ns_run(sys.executable, "-c",
                                f"import socket; socket.create_connection(('10.0.0.2', {port}))",
                                timeout=30).returncode == 0, "memcached listening")
    clients = [subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT,
                                 str(port), "400", f"c{n}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in range(3)]
    procs.extend(clients)
    for c in clients:
        out, err = c.communicate(timeout=300)
        assert c.returncode == 0 and out.strip() == "ok", err
    lt = stats.read("libtas", str(mc.pid))
    # (one may be the race of an event with a slice's very end)
    assert lt["wakeups_late"] <= 1, lt["wakeups_late"]
    mc.kill()
    mc.communicate(timeout=30)
