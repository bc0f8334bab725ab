"""libtas: a program that closes its connections and exits at once loses
nothing.  The daemon finishes the connections the app had closed (data, FIN)
from the app's segment after the app is gone, closes the ones still open as
Linux closes a process's sockets at exit (FIN after their data: nothing was
left unread in them), then frees the segment."""
import json
import re
import subprocess
import sys

import pytest

from libtas_helpers import counters, finish, tas_run
from tasd import wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

NBYTES = 8 << 20

# The part of the stream the Linux receiver leaves unread until the sender
# has exited: TAS's 256 KiB TX buffer alone holds it, so the sender's
# sendall returns, and it is still in flight when the sender exits.
HELD = 192 << 10

# Linux receiver with a small receive buffer: reads all but HELD bytes of the
# first connection, waits for a line on stdin, reads the rest; then takes
# the second connection.  Counts, hashes, and says how each stream ended.
RECEIVER = """
import hashlib, json, socket, sys
port, nbytes, held = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
s.bind(("0.0.0.0", port))
s.listen(4)
print("listening", flush=True)
results = []
for i in range(2):
    c, _ = s.accept()
    h, n, end = hashlib.sha256(), 0, "eof"
    try:
        while i == 0 and n < nbytes - held:
            d = c.recv(min(65536, nbytes - held - n))
            h.update(d)
            n += len(d)
        if i == 0:
            print("holding", flush=True)
            sys.stdin.readline()
        while (d := c.recv(65536)):
            h.update(d)
            n += len(d)
    except ConnectionResetError:
        end = "reset"
    c.close()
    results.append({"bytes": n, "sha": h.hexdigest(), "end": end})
print(json.dumps(results), flush=True)
"""

# Under tas-run: one connection written, closed, and the program exits at
# once (with os._exit, libtas's destructors do not run either); a second
# connection is still open at exit.
SENDER = """
import hashlib, os, random, socket, sys
port, nbytes, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = random.Random(5).randbytes(nbytes)
print(hashlib.sha256(data).hexdigest(), flush=True)
s = socket.create_connection(("10.0.0.1", port))
s.sendall(data)
s.close()
left_open = socket.create_connection(("10.0.0.1", port))
left_open.sendall(b"x")
left_open.detach()      # no finalizer may close it: open until the exit
if how == "_exit":
    os._exit(0)
sys.exit(0)
"""


def app_mappings(d):
    """The daemon's mappings of app segments (memfds named tas-<inst>-appN)."""
    with open(f"/proc/{d.proc.pid}/maps") as f:
        return re.findall(rf"tas-{d.instance}-app\d+", f.read())


@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_close_then_exit_delivers_everything(daemon, procs, how):
    port = 7201 if how == "exit" else 7202
    rcv = subprocess.Popen(["ip", "netns", "exec", daemon.netns, sys.executable, "-u", "-c",
                            RECEIVER, str(port), str(NBYTES), str(HELD)], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(rcv)
    assert rcv.stdout.readline().strip() == "listening", rcv.stderr.read()
    before = counters(daemon)
    snd = tas_run(procs, daemon, sys.executable, "-c", SENDER, str(port), str(NBYTES), how)
    assert rcv.stdout.readline().strip() == "holding", rcv.stderr.read()
    sha = finish(snd, "sender under libtas").strip()

    def grown(key):
        return counters(daemon).get(key, 0) - before.get(key, 0)
    # The sender is gone with its closed connection unfinished: the daemon
    # keeps that one (and the segment), and closes the open one for it.
    wait_until(lambda: grown("tcp_orphaned") == 2 and counters(daemon)["apps_lingering"] == 1,
               "the closed connection and the segment to be kept")
    assert grown("tcp_closed_at_exit") == 1 and grown("tcp_rst_unread") == 0
    assert len(app_mappings(daemon)) == 1
    rcv.stdin.write("go\n")
    rcv.stdin.flush()
    closed, left_open = json.loads(finish(rcv, "Linux receiver").strip().splitlines()[-1])
    assert closed == {"bytes": NBYTES, "sha": sha, "end": "eof"}
    # its byte, then the FIN the daemon sent when the sender exited
    assert left_open["bytes"] == 1 and left_open["end"] == "eof"
    wait_until(lambda: counters(daemon)["tcp_flows_active"] == 0, "flows to close")
    wait_until(lambda: counters(daemon).get("apps_lingering", 0) == 0,
               "the exited app's segment to be released")
    assert app_mappings(daemon) == []
    assert grown("tcp_orphan_timeouts") == 0
