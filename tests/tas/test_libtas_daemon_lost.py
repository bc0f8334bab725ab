"""libtas when the daemon dies under a program: its control socket stays
readable (EOF) for ever, and a blocked accept or recv used to wake on it
again and again, spinning a CPU.  Now every call that waits only for TAS
fails with ENETDOWN, libtas says once on stderr why, and the program can
go on with its kernel descriptors."""
import signal
import subprocess
import sys

import pytest

from libtas_helpers import tas_run

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
