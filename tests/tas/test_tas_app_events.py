"""Control events are never dropped, however many pile up while an app is
busy: the daemon used to drop what the app's socket had no room for, and the
libtas core, reading them while it waits for a reply, kept 256 and dropped the
rest; either way a lost NEWCONN or CONN_OPENED hung an accept or a connect."""
import subprocess
import sys

import pytest

from bindings import stats
from tas.app import TasApp
from tasd import wait_until

pytestmark = pytest.mark.root

N = 300  # more than the old queue's 256 slots

PEER = f"""
import socket, sys
conns = [socket.create_connection(('10.0.0.2', 5101)) for _ in range({N})]
print(len(conns), flush=True)
sys.stdin.read()  # hold them open until the test is done
"""


def established(daemon, counters=None):
    counters = counters or stats.read("tas", daemon.instance)
    return counters.get("tcp_established", 0)


def test_events_queued_during_a_request_are_all_delivered(daemon):
    app = TasApp(daemon.instance)
    peer = None
    try:
        lst = app.listen(5101, backlog=1024)
        before = stats.read("tas", daemon.instance)
        peer = subprocess.Popen(["ip", "netns", "exec", daemon.netns, sys.executable, "-c", PEER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert peer.stdout.readline().strip() == str(N)
        # Every NEWCONN is sent once the connection is established on our side;
        # the app reads none of them until its next request.
        wait_until(lambda: established(daemon) - established(daemon, before) >= N,
                   "all connections established")
        other = app.listen(5102)   # waits for its reply behind N events
        app.poll()
        after = stats.read("tas", daemon.instance)
        assert after.get("app_ctl_send_failures", 0) == before.get("app_ctl_send_failures", 0)
        # The app's socket fills before N events: the daemon held the rest back.
        deferred = after.get("app_ctl_deferred", 0) - before.get("app_ctl_deferred", 0)
        print(f"daemon deferred {deferred} of {N} events")
        assert app.newconns == N, f"{N} connections announced, {app.newconns} NEWCONN events seen"
        for _ in range(N):
            assert app.accept(lst, block=False) is not None
        app.close_listener(other)
        app.close_listener(lst)
    finally:
        if peer is not None:
            peer.stdin.close()
            peer.wait(timeout=60)
        app.close()
