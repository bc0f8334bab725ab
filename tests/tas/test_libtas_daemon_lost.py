"""libtas when the daemon dies under a program: its control socket stays
readable (EOF) for ever, and a blocked accept or recv used to wake on it
again and again, spinning a CPU.  Now every call that waits only for TAS
fails with ENETDOWN, libtas says once on stderr why, and the program can
go on with its kernel descriptors."""
import json
import signal
import subprocess
import sys

import pytest

from libtas_helpers import ECHO_THREADS, ROOT, tas_run

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

PORT = 7411

# Under tas-run: a listener blocked in accept (thread 1) and an accepted
# connection blocked in recv (main thread); each prints how its call ended.
PROGRAM = """
import errno, socket, sys, threading
s = socket.socket()
s.bind(("0.0.0.0", %d))
s.listen(4)
print("listening", flush=True)
c, _ = s.accept()
print("accepted", flush=True)
def say(line):              # one write: two threads report at once
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
def accept_again():
    try:
        s.accept()
        say("accept: ok")
    except OSError as e:
        say(f"accept: {errno.errorcode[e.errno]}")
t = threading.Thread(target=accept_again)
t.start()
try:
    c.recv(100)
    say("recv: ok")
except OSError as e:
    say(f"recv: {errno.errorcode[e.errno]}")
t.join()
""" % PORT

CLIENT = """
import socket, sys, time
for i in range(600):
    try:
        c = socket.create_connection(("10.0.0.2", %d)); break
    except OSError:
        time.sleep(0.1)
print("connected", flush=True)
sys.stdin.readline()
""" % PORT


def test_blocked_calls_fail_with_enetdown_when_the_daemon_is_killed(tas_daemon, procs):
    d = tas_daemon
    app = tas_run(procs, d, sys.executable, "-c", PROGRAM)
    assert app.stdout.readline().strip() == "listening"
    client = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(client)
    assert client.stdout.readline().strip() == "connected"
    assert app.stdout.readline().strip() == "accepted"
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=60)
    out, err = app.communicate(timeout=120)    # a spinning app never ends: the timeout fails it
    assert sorted(out.split("\n")[:2]) == ["accept: ENETDOWN", "recv: ENETDOWN"], (out, err)
    assert err.count("libtas: the TAS daemon closed its connection") == 1, err
    assert app.returncode == 0, err
    client.communicate(input="\n", timeout=60)


# Under tas-run: two connections to a Linux echo server, then, once the
# daemon is dead, sends into free ring space, an edge-triggered epoll wait
# and a non-blocking recv: the calls an event loop makes.
EVENT_LOOP = """
import errno, json, select, socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("10.0.0.1", port)); s.sendall(b"x"); s.recv(1)
t = socket.create_connection(("10.0.0.1", port)); t.sendall(b"y"); t.recv(1)
ep = select.epoll()
ep.register(t.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
ep.poll(10)                          # writable: reported once, edge-triggered
print("ready", flush=True)
sys.stdin.readline()                 # the daemon is dead now
out = {"sends": []}
for i in range(3):
    try:
        out["sends"].append(s.send(b"hello"))
    except OSError as e:
        out["sends"].append(errno.errorcode[e.errno])
    time.sleep(0.02)
ev = ep.poll(60)
out["epoll"] = [bool(e & select.EPOLLERR) and bool(e & select.EPOLLHUP) for _, e in ev]
t.setblocking(False)
try:
    out["recv"] = t.recv(10).decode()
except OSError as e:
    out["recv"] = errno.errorcode[e.errno]
print(json.dumps(out), flush=True)
"""



def test_an_event_loop_learns_the_daemon_is_gone(tas_daemon, procs):
    """Killed, the daemon takes the connections with it.  A send into free
    ring space used to succeed (the bytes went nowhere), epoll never
    reported the connections (an event loop waited forever) and a
    non-blocking recv said EAGAIN; now each fails, with ENETDOWN, and epoll
    reports EPOLLERR|EPOLLHUP, as for a reset connection."""
    d = tas_daemon
    echo = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-u", "-c", ECHO_THREADS,
                             "7412"], stdout=subprocess.PIPE, text=True)
    procs.append(echo)
    assert echo.stdout.readline() == "listening\n"
    app = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                            sys.executable, "-c", EVENT_LOOP, "7412"], cwd=ROOT, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(app)
    assert app.stdout.readline() == "ready\n"
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=60)
    out, err = app.communicate(input="go\n", timeout=120)
    assert app.returncode == 0, err
    assert json.loads(out) == {"sends": ["ENETDOWN"] * 3, "epoll": [True], "recv": "ENETDOWN"}
