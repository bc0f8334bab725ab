"""tasctl against a live daemon with live flows: JSON output of every
command, flow filters, apps with their credentials, and `flow kill`, which
resets the peer's connection; the metrics endpoint, SIGHUP reload and the
systemd unit."""
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tas.app import TasApp, TasError
from tasd import Daemon, wait_until

PEER_CLIENT = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=60)
s.sendall(b"hello")
try:
    print("eof" if s.recv(100) == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


def tasctl(d, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def tasctl_json(d, *args):
    return json.loads(tasctl(d, *args, "--json").stdout)


@pytest.fixture
def live(daemon):
    """A TAS app with one connection from the Linux peer on port 7300."""
    app = TasApp(daemon.instance)
    lst = app.listen(7300)
    peer = subprocess.Popen(["ip", "netns", "exec", daemon.netns, sys.executable, "-c",
                             PEER_CLIENT, "7300"], stdout=subprocess.PIPE, text=True)
    flow = app.accept(lst)
    assert flow.recv(100) == b"hello"
    try:
        yield app, flow, peer
    finally:
        if peer.poll() is None:
            peer.kill()
        peer.communicate()
        app.close()


def test_flows_json_and_filters(daemon, live):
    app, flow, _ = live
    doc = tasctl_json(daemon, "flows")
    assert doc["instance"] == daemon.instance
    rows = [r for r in doc["flows"] if r["local_port"] == 7300]
    assert len(rows) == 1
    row = rows[0]
    for key, kind in (("flow_id", int), ("peer", str), ("peer_port", int), ("local_port", int),
                      ("state", str), ("app", int), ("uid", int), ("pid", int),
                      ("rate_kbps", int), ("rtt_us", int), ("snd_wnd", int)):
        assert isinstance(row[key], kind), (key, row)
    assert (row["peer"], row["state"], row["flow_id"], row["pid"]) == \
        ("10.0.0.1", "ESTABLISHED", flow.id, os.getpid())
    assert [r["flow_id"] for r in tasctl_json(daemon, "flows", "--port", "7300")["flows"]] == \
        [flow.id]
    assert tasctl_json(daemon, "flows", "--port", "7301")["flows"] == []
    assert tasctl_json(daemon, "flows", "--peer", "10.0.0.9")["flows"] == []
    by_app = tasctl_json(daemon, "flows", "--app", str(row["app"]), "--state", "established")
    assert [r["flow_id"] for r in by_app["flows"]] == [flow.id]
    table = tasctl(daemon, "flows", "--port", "7300").stdout
    assert "ESTABLISHED" in table and "10.0.0.1" in table


def test_apps_config_stats_list_top(daemon, live):
    apps = tasctl_json(daemon, "apps")
    mine = [a for a in apps["apps"] if a["pid"] == os.getpid()]
    assert mine and mine[0]["uid"] == 0 and mine[0]["state"] == "attached"
    assert mine[0]["flows"] == 1 and 7300 in mine[0]["listeners"]
    assert apps["per_uid"]["0"]["flows"] >= 1 and apps["caps"]["contexts"] >= 1
    cfg = tasctl_json(daemon, "config")["config"]
    assert cfg["tas"]["instance"] == daemon.instance and "limits" in cfg
    assert daemon.instance in tasctl_json(daemon, "list")["instances"]
    counters = tasctl_json(daemon, "stats")["counters"]
    assert counters["tcp_conns"] >= 1
    top = tasctl_json(daemon, "top", "--count", "1", "--interval", "0.2")
    assert set(top["rates_per_s"]) >= {"rx_pkts", "tx_pkts"} and top["gauges"]["tcp_conns"] >= 1
    assert any(f["local_port"] == 7300 for f in top["flows"])
    assert "per-uid use" in tasctl(daemon, "apps").stdout


def test_flow_kill_resets_the_peer(daemon, live):
    app, flow, peer = live
    killed = tasctl_json(daemon, "flow", "kill", str(flow.id))["killed"]
    assert (killed["flow_id"], killed["local_port"]) == (flow.id, 7300)
    out, _ = peer.communicate(timeout=60)
    assert out.strip() == "reset"
    with pytest.raises(TasError) as e:
        while True:
            flow.recv(100)
    assert e.value.errno == 104    # ECONNRESET
    flow.close()
    wait_until(lambda: not tasctl_json(daemon, "flows", "--port", "7300")["flows"],
               "the killed flow to go")
    bad = tasctl(daemon, "flow", "kill", "999999", check=False)
    assert bad.returncode == 1 and "no flow 999999" in bad.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint_scrape(tmp_path, require_root):
    port = free_port()
    d = Daemon(tmp_path, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n').start()
    try:
        with TasApp(d.instance) as app:
            app.listen(7400)
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        text = body.decode()
        assert f'kb_tas_rx_pkts{{instance="{d.instance}"}}' in text
        line = next(l for l in text.splitlines()
                    if l.startswith(f'kb_tas_apps_registered{{instance="{d.instance}"}}'))
        assert float(line.split()[-1]) >= 1
    finally:
        d.stop()


def test_sighup_reloads_live_settings(tmp_path, require_root):
    d = Daemon(tmp_path, extra="\n[limits]\ncontexts_per_uid = 8\n").start()
    apps = []
    try:
        text = d.config.read_text()
        d.config.write_text(text.replace("contexts_per_uid = 8", "contexts_per_uid = 2")
                                .replace("mem_mb = 256", "mem_mb = 300"))
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: tasctl_json(d, "config")["config"]["limits"]["contexts_per_uid"] == 2,
                   "the reload")
        assert tasctl_json(d, "config")["config"]["dpdk"]["mem_mb"] == 256   # needs a restart
        apps += [TasApp(d.instance), TasApp(d.instance)]
        with pytest.raises(TasError, match="Too many open files"):
            apps.append(TasApp(d.instance))
        d.config.write_text(text.replace("contexts_per_uid = 8", "contexts_per_uid = 0"))
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: tasctl_json(d, "stats")["counters"]["apps_registered"] >= 2 and
                   any("result=refused" in l for l in read_lines(d)), "the refused reload")
        assert tasctl_json(d, "config")["config"]["limits"]["contexts_per_uid"] == 2
    finally:
        for a in apps:
            a.close()
        assert d.stop() == 0
    out = "".join(d.output)
    assert ("event=reload result=ok applied=limits.contexts_per_uid "
            "needs_restart=dpdk.mem_mb") in out
    assert "bad value for limits.contexts_per_uid" in out


def read_lines(d):
    """The daemon's log lines so far (non-blocking)."""
    d.poll_output()
    return d.output


def test_systemd_unit_verifies():
    unit = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "tas.service")
    r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = open(unit).read()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "RuntimeDirectoryMode=0755" in text
