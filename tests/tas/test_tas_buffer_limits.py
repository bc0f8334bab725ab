"""An app whose segment holds no more flows' buffers: its peers' SYNs go
unanswered (Linux would take them), so the daemon says once, on its log,
which key was reached and what each connection costs, and counts the drops.
Real daemon, a Python server under tas-run, the Linux kernel as the client."""
import json
import sys

import pytest

from libtas_helpers import counters, finish, in_peer, tas_run
from tasd import Daemon

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

PORT = 7460

# Accepts every connection and keeps it.
SERVER = """
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))   # a TAS socket has a kernel fd too
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
print("listening", flush=True)
keep = []
while True:
    keep.append(s.accept()[0])
"""

# Opens connections until one gets no answer within a second; how many got one.
CLIENT = """
import json, resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
held = []
while len(held) < int(sys.argv[2]):
    try:
        held.append(socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=1.0))
    except OSError:     # timed out: its SYN went unanswered
        break
print(json.dumps({"connected": len(held)}), flush=True)
"""


def test_a_full_segment_is_said_once_with_its_key(tmp_path, procs):
    # 8 MiB hold about 15 flows of 2 x 256 KiB; no SYN pool, so every SYN
    # asks the slow path for buffers
    d = Daemon(tmp_path, extra='[buffers]\napp_segment = "8M"\n[tcp]\nsyn_pool = 0\n').start()
    try:
        srv = tas_run(procs, d, sys.executable, "-u", "-c", SERVER, str(PORT))
        assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
        cli = in_peer(procs, d, sys.executable, "-c", CLIENT, str(PORT), "64")
        connected = json.loads(finish(cli, "Linux client"))["connected"]
        assert 0 < connected < 20
        assert counters(d)["tcp_no_buffer_drops"] >= 1
        d.poll_output()
        said = [line for line in d.output if "gets no more connections" in line]
        assert len(said) == 1, said   # once, though every later SYN was dropped too
        assert f"app pid {srv.pid} (uid 0) gets no more connections at {connected}:" in said[0]
        assert "buffers.app_segment is reached" in said[0] and "524288 bytes" in said[0]
    finally:
        d.stop()


def test_the_default_segment_takes_thousands_of_connections(tmp_path, procs):
    # buffers.app_segment = "auto" is 4 GiB with shm (a sparse memfd): about
    # 8,000 connections of 2 x 256 KiB.  The old 1G stopped redis-server at
    # 2,015 clients where Linux takes them all.
    want = 2100
    d = Daemon(tmp_path).start()
    try:
        srv = tas_run(procs, d, sys.executable, "-u", "-c", SERVER, str(PORT))
        assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
        cli = in_peer(procs, d, sys.executable, "-c", CLIENT, str(PORT), str(want))
        assert json.loads(finish(cli, "Linux client"))["connected"] == want
        assert counters(d).get("tcp_no_buffer_drops", 0) == 0
        d.poll_output()
        assert not [line for line in d.output if "gets no more connections" in line]
    finally:
        d.stop()
