"""A connect the fast path completes while the app's context queue is full
(tas/fastpath/fp_tcp_connect.c, fp_tcp_synsent): there is no room for its
TAS_ARX_OPENED, so the flow is marked TAS_FLF_UNTOLD (counted as
conn_untold) and the slow path tells the app with a CONN_OPENED instead
(tas/slowpath/tcp.py _establish).  More fast connects than context 0's
queue holds, the app reading nothing meanwhile, prove that every connect
is answered exactly once, one way or the other; that the untold ones are
exactly the CONN_OPENED answers; and that those connections work (bytes
echoed by a Linux server in the peer namespace, which accepted every
connection)."""
import collections
import ipaddress
import sys

import pytest

from bindings._tasapp import ffi, lib
from libtas_helpers import counters, in_peer, syn_counters
from tas.app import TasApp
from tasd import Daemon, wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

PORT = 7411
POOL = 256                          # tcp.connect_pool's most (TAS_SYN_POOL_MAX)
N = lib.TAS_CTXQ_ENTRIES + 200      # connects, the first one slow
SAMPLE = 16                         # untold connections that echo bytes

# Linux echo server, one thread: keeps accepting (its SYN-ACKs keep
# coming) and holds every connection open.
ECHO = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
s = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=8192)
s.setblocking(False)
sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            try:
                while True:
                    sel.register(s.accept()[0], selectors.EVENT_READ)
            except BlockingIOError:
                pass
        elif (d := key.fileobj.recv(65536)):
            key.fileobj.sendall(d)
        else:
            sel.unregister(key.fileobj)
            key.fileobj.close()
"""


@pytest.fixture
def daemon(tmp_path):
    # small flow buffers: thousands of connections in one app's segment
    # (the default ephemeral port range has room for them)
    d = Daemon(tmp_path, extra=f'[tcp]\nconnect_pool = {POOL}\n'
                               '[buffers]\nrx_buf = "16K"\ntx_buf = "16K"\n').start()
    try:
        yield d
    finally:
        d.stop()


class Answers:
    """What the app heard about its connects, by req_id."""

    def __init__(self, app):
        self.app = app
        self.count = collections.Counter()
        self.opened = set()          # req_ids answered by TAS_ARX_OPENED
        self.events = {}             # req_id -> its CONN_OPENED (a copy)
        self.other = []              # anything else: must stay empty
        self._arx = ffi.new("struct tas_arx[256]")
        self._ev = ffi.new("struct tas_ctl_msg *")

    def take_events(self):
        while lib.tas_app_event(self.app.handle, self._ev):
            if self._ev.type != lib.TAS_CTL_CONN_OPENED:
                self.other.append(("event", self._ev.type))
                continue
            self.count[self._ev.req_id] += 1
            self.events[self._ev.req_id] = ffi.new("struct tas_ctl_msg *", self._ev[0])

    def take_all(self):
        self.take_events()
        while (n := lib.tas_app_poll_ctx(self.app.handle, 0, self._arx, 256)) > 0:
            for e in self._arx[0:n]:
                if e.type != lib.TAS_ARX_OPENED:
                    self.other.append(("arx", e.type))
                    continue
                self.count[e.rx_bump] += 1
                self.opened.add(e.rx_bump)


def fallbacks(p):
    return sum(v for k, v in p.items() if k.startswith("conn_fallback_"))


def pool_level(p):
    """The connector's pool (the only pool on a fresh daemon)."""
    return (p.get("syn_pool_provisioned", 0) + p.get("syn_pool_recycled", 0) -
            p.get("syn_pool_returned", 0) - p.get("conn_fast", 0))


def echoes(flow, data):
    flow.sendall(data)
    got = b""
    while len(got) < len(data):
        d = flow.recv(len(data) - len(got))
        assert d, "connection ended early"
        got += d
    return got == data


def peer_established(d):
    out = d.ns_run("ss", "-Htn", "state", "established", f"( sport = :{PORT} )",
                   check=True).stdout
    return len(out.splitlines())


def test_connects_completed_with_the_queue_full_are_told_once_by_the_slow_path(daemon, procs):
    srv = in_peer(procs, daemon, sys.executable, "-u", "-c", ECHO, str(PORT))
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    app = TasApp(daemon.instance)
    try:
        ans, reqs = Answers(app), []
        req, peer = ffi.new("uint32_t *"), int(ipaddress.IPv4Address("10.0.0.1"))

        def connect():
            # tas_app_connect waits for room in the command queue itself
            assert lib.tas_app_connect(app.handle, peer, PORT, req) == 0
            reqs.append(req[0])

        def answered_first():
            ans.take_events()
            return ans.count[reqs[0]] > 0

        connect()            # slow: it gives the app its connector
        wait_until(answered_first, "the first connect's CONN_OPENED")
        s0, c0 = syn_counters(daemon), counters(daemon)
        assert s0.get("conn_connectors") == 1 and s0.get("conn_fallback_no_connector") == 1

        def ready():
            # every connect so far taken by the fast path, the pool full
            # again: the next half-pool all open fast (none falls back)
            ans.take_events()
            p = syn_counters(daemon)
            return (p.get("conn_fast", 0) + fallbacks(p) == len(reqs) and
                    pool_level(p) == POOL)

        while len(reqs) < N:
            wait_until(ready, "the connector's pool refilled")
            for _ in range(min(POOL // 2, N - len(reqs))):
                connect()
        wait_until(ready, "the last connects taken")
        # Only now does the app read context 0.
        wait_until(lambda: ans.take_all() or len(ans.count) == N, "every connect answered")
        # Each connection established on our side once, then a round trip
        # through the daemon (events sent before its reply come first):
        # whatever arrives now is an answer too many.
        wait_until(lambda: counters(daemon)["tcp_established"] - c0["tcp_established"] == N - 1,
                   "the slow path to take every connection")
        app.close_listener(app.listen(PORT + 1))
        ans.take_all()
        s1 = syn_counters(daemon)

        assert ans.other == []
        assert set(ans.count) == set(reqs)
        twice = [r for r, n in ans.count.items() if n > 1]
        assert not twice, f"connects answered more than once: {twice[:10]}"
        assert all(ans.events[r].status == 0 for r in ans.events)
        untold = s1.get("conn_untold", 0) - s0.get("conn_untold", 0)
        print(f"{N} connects: {len(ans.opened)} TAS_ARX_OPENED, {untold} untold")
        assert untold > 0
        # the first connect's only: every CONN_OPENED but its is an untold one
        assert fallbacks(s1) == 1, s1
        assert len(ans.events) == untold + 1 and len(ans.opened) == N - 1 - untold

        wait_until(lambda: peer_established(daemon) == N, "the server to accept every connection")
        untold_ids = sorted(set(ans.events) - {reqs[0]})
        step = max(1, len(untold_ids) // SAMPLE)
        for i, r in enumerate(untold_ids[::step][:SAMPLE]):
            flow = app._new_flow(ans.events[r][0], 0)
            assert echoes(flow, bytes([i]) * (1000 + i)), f"untold connection {r} echoed wrong"
    finally:
        app.close()
