"""TAS terminates real TCP connections with the Linux kernel as the peer."""
import errno
import subprocess
import sys

import pytest

from bindings import stats
from deploy import transfers
from tas.app import TasApp, TasError
from tasd import Daemon, wait_until

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace

GIB = 1 << 30


@pytest.fixture
def app(daemon):
    a = TasApp(daemon.instance)
    try:
        yield a
    finally:
        a.close()


def counters(d):
    return stats.read("tas", d.instance)


def peer_python(d, script, **popen):
    """Run a Python snippet in the daemon's peer namespace (the Linux side)."""
    return subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", script],
                            **popen)


def linux_to_tas(d, app, port, nbytes, seed):
    n, same, _ = transfers.linux_to_tas(d.netns, app, port, nbytes, seed)
    assert n == nbytes
    assert same, "the bytes TAS received differ from what Linux sent"


def tas_to_linux(d, app, port, nbytes, seed):
    n, same, _ = transfers.tas_to_linux(d.netns, app, port, nbytes, seed)
    assert n == nbytes
    assert same, "the bytes Linux received differ from what TAS sent"


def test_linux_client_to_tas_server_1gib(daemon, app):
    linux_to_tas(daemon, app, 5001, GIB, 1)


def test_tas_client_to_linux_server_1gib(daemon, app):
    tas_to_linux(daemon, app, 5002, GIB, 2)
    wait_until(lambda: counters(daemon)["tcp_flows_active"] == 0, "flows to close")


FAULTS = """
[fault]
rx_loss_ppm = 10000
rx_dup_ppm = 10000
rx_reorder_ppm = 10000
tx_loss_ppm = 10000
tx_reorder_ppm = 10000
"""


def test_loss_reordering_duplication(tmp_path):
    """1% loss, 1% duplication and 1% reordering in both directions.  This
    kernel has no netem (CONFIG_NET_SCH_NETEM unset), so the daemon's fault
    injector at the port plays the lossy network; both TCP stacks recover."""
    d = Daemon(tmp_path, extra=FAULTS).start()
    try:
        with TasApp(d.instance) as a:
            linux_to_tas(d, a, 5003, 4 << 20, 3)
            tas_to_linux(d, a, 5004, 4 << 20, 4)
        c = counters(d)
        assert c["fault_dropped"] > 0 and c["fault_duplicated"] > 0 and c["fault_reordered"] > 0
        assert c["tcp_fast_rexmits"] + c["tcp_rto_rexmits"] > 0    # we resent lost data
        assert c["tcp_ooo_accepted"] > 0 and c["tcp_rx_dup"] > 0   # and absorbed theirs
        # SACK both ways: we reported our out-of-order interval, and resent
        # only the holes Linux's SACK blocks showed.
        assert c["tcp_sack_blocks_sent"] > 0 and c["tcp_sack_rexmit_segs"] > 0
    finally:
        d.stop()


def test_peer_reset_is_reported(daemon, app):
    lst = app.listen(5005)
    script = ("import socket,struct; s=socket.create_connection(('10.0.0.2',5005)); "
              "s.sendall(b'x'*1000); import time; time.sleep(0.3); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0)); s.close()")
    p = peer_python(daemon, script)
    flow = app.accept(lst)
    got = b""
    with pytest.raises(TasError) as e:
        while True:
            d = flow.recv(4096)
            assert d, "a reset connection must not look like a clean end of stream"
            got += d
    assert e.value.errno == errno.ECONNRESET
    assert got == b"x" * 1000
    assert p.wait() == 0
    flow.close()
    app.close_listener(lst)
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0, "the reset flow to be freed")


def test_half_close_keeps_the_other_direction(daemon, app):
    lst = app.listen(5006)
    script = ("import socket; s=socket.create_connection(('10.0.0.2',5006)); "
              "s.sendall(b'q'*100000); s.shutdown(socket.SHUT_WR); d=b''\n"
              "while True:\n  x=s.recv(65536)\n  if not x: break\n  d+=x\n"
              "assert d==b'r'*300000, len(d)")
    p = peer_python(daemon, script, stderr=subprocess.PIPE, text=True)
    flow = app.accept(lst)
    n, _ = transfers.read_all(flow)
    assert n == 100000
    flow.sendall(b"r" * 300000)    # our side is still open after the peer's FIN
    flow.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    app.close_listener(lst)


def test_listen_on_port_in_use_fails_clearly(daemon, app):
    lst = app.listen(5007)
    with pytest.raises(TasError) as e:
        app.listen(5007)
    assert e.value.errno == errno.EADDRINUSE
    assert "listen on port 5007" in str(e.value)
    other = TasApp(daemon.instance)
    try:
        with pytest.raises(TasError) as e:
            other.listen(5007)
        assert e.value.errno == errno.EADDRINUSE
    finally:
        other.close()
    app.close_listener(lst)


def test_connect_to_closed_port_is_refused(daemon, app):
    with pytest.raises(TasError) as e:
        app.connect("10.0.0.1", 5999)
    assert e.value.errno == errno.ECONNREFUSED


def test_thousand_concurrent_connections(daemon, app):
    n = 1000
    lst = app.listen(5008, backlog=n)
    script = f"""
import resource, socket
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
socks = [socket.create_connection(('10.0.0.2', 5008)) for _ in range({n})]
for i, s in enumerate(socks):
    s.sendall(b'%08d' % i)
for i, s in enumerate(socks):
    d = b''
    while len(d) < 8:
        d += s.recv(8 - len(d))
    assert d == b'%08d' % i, (i, d)
for s in socks:
    s.close()
"""
    p = peer_python(daemon, script, stderr=subprocess.PIPE, text=True)
    flows = [app.accept(lst) for _ in range(n)]
    c = counters(daemon)
    assert c["flows_added"] - c["flows_removed"] >= n     # all installed at once
    for f in flows:
        msg = b""
        while len(msg) < 8:
            msg += f.recv(8 - len(msg))
        f.sendall(msg)
    for f in flows:
        assert f.recv(1) == b""    # the peer closed
        f.close()
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    app.close_listener(lst)
    wait_until(lambda: counters(daemon)["tcp_flows_active"] == 0, "all flows to be removed")
    assert counters(daemon)["tcp_conns"] == 0


def test_stale_library_version_is_refused(daemon):
    """An app speaking another shared-memory version gets EPROTO, not a segment."""
    import socket
    from bindings._tasapp import ffi, lib
    m = ffi.new("struct tas_ctl_msg *")
    m.type, m.req_id, m.backlog = lib.TAS_CTL_REGISTER, 1, lib.TAS_SHM_VERSION + 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(f"/run/tas/{daemon.instance}.sock")
        s.send(bytes(ffi.buffer(m)))
        msg, fds, _, _ = socket.recv_fds(s, ffi.sizeof(m[0]), 4)
    reply = ffi.from_buffer("struct tas_ctl_msg *", msg)
    assert reply.status == -errno.EPROTO
    assert fds == []


def test_killed_app_is_cleaned_up(daemon):
    """An app killed with SIGKILL loses its connections (reset) and segment."""
    p = transfers.peer(daemon.netns, "sink", 5012)
    script = (f"from tas.app import TasApp; import time; a = TasApp('{daemon.instance}'); "
              "f = a.connect('10.0.0.1', 5012); f.sendall(b'z' * 1000); print('up', flush=True); "
              "time.sleep(600)")
    app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert app.stdout.readline().strip() == "up"
    assert counters(daemon)["apps_active"] >= 1
    app.kill()
    app.wait()
    wait_until(lambda: counters(daemon)["apps_active"] == 0, "the app to be unregistered")
    wait_until(lambda: counters(daemon)["tcp_conns"] == 0, "its connection to be reset")
    p.communicate(timeout=60)   # the Linux side saw the reset and finished


def test_idle_flow_refreshes_its_timestamps(make_daemon):
    """An idle flow sends pure ACKs every tcp.ts_refresh_s (our microsecond
    TSval would otherwise look wrapped to the peer's PAWS check after ~36
    idle minutes) and keeps working."""
    d = make_daemon(extra="[tcp]\nts_refresh_s = 1\n").start()
    app = TasApp(d.instance)
    try:
        lst = app.listen(5010)
        script = ("import socket,sys; s=socket.create_connection(('10.0.0.2',5010)); "
                  "s.sendall(b'a'); sys.stdin.readline(); s.sendall(b'b'*1000); d=b''\n"
                  "while len(d) < 1000:\n  d+=s.recv(4096)\n"
                  "assert d==b'c'*1000, len(d)")
        p = peer_python(d, script, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        flow = app.accept(lst)
        assert flow.recv(10) == b"a"
        wait_until(lambda: counters(d).get("tcp_ts_refresh_acks", 0) >= 2,
                   "an idle flow to refresh its timestamps")
        p.stdin.write("go\n")
        p.stdin.flush()
        got = b""
        while len(got) < 1000:
            got += flow.recv(4096)
        assert got == b"b" * 1000
        flow.sendall(b"c" * 1000)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        flow.close()
        app.close_listener(lst)
    finally:
        app.close()


def test_keepalive_probes_are_answered(daemon, app):
    """Linux keepalive probes (like zero-window probes: empty, one byte below
    the window) must get an ACK, or the peer gives the connection up; that
    ACK is also how a peer learns of a window update we sent and lost."""
    before = counters(daemon)
    lst = app.listen(5011)
    script = ("import socket, time\n"
              "s = socket.create_connection(('10.0.0.2', 5011))\n"
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)\n"
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)\n"
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)\n"
              "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)\n"
              "time.sleep(6)   # unanswered, the probes kill it after 3 s\n"
              "s.sendall(b'ping')\n"
              "assert s.recv(10) == b'pong'\n")
    p = peer_python(daemon, script, stderr=subprocess.PIPE, text=True)
    flow = app.accept(lst)
    assert flow.recv(10) == b"ping"
    flow.sendall(b"pong")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    flow.close()
    app.close_listener(lst)
    assert counters(daemon)["tcp_probes_answered"] - before.get("tcp_probes_answered", 0) >= 2
