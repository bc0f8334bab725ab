"""One app, run by an unprivileged user (uid 65534), attacks the daemon while
other apps move data; the daemon and the other apps must not notice.

Every test starts its own daemon (fresh state) with a live connection
("keeper": a TAS app echoing with a Linux echo server in the peer namespace,
all along) and a canary app whose segment holds a known pattern.  After the
attack: the daemon is alive and answers ping, a new honest app completes an
echo, the keeper's connection still delivers, the canary's bytes are
unchanged, and the daemon stops on SIGTERM within 10 s.  The attacks are in
isolation_attacks.py, run with the system Python as uid 65534.
"""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from bindings import stats
from libtas_helpers import ECHO_THREADS, recv_upto
from tas.app import TasApp
from tasd import Daemon, unique, wait_until

NOBODY = 65534
OTHER_UID = 65533
ATTACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "isolation_attacks.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"     # readable by uid 65534 (ours may not be)
ECHO_PORT = 7000
CONTEXTS_PER_UID = 8
CONNECTIONS_PER_UID = 16



def limits(**over):
    """The [limits] section of the test daemons (small caps: fast tests)."""
    keys = {"contexts_per_uid": CONTEXTS_PER_UID, "connections_per_uid": CONNECTIONS_PER_UID,
            "register_timeout_ms": 1000, **over}
    return "\n[limits]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


SOURCE = r"""
import socket, sys
s = socket.create_connection(("10.0.0.2", int(sys.argv[1])), timeout=30)
buf = b"s" * 65536
try:
    while True:
        s.sendall(buf)
except OSError:
    pass
"""


def counters(d):
    return stats.read("tas", d.instance)


class Keeper(threading.Thread):
    """A TAS app with one connection to the Linux echo server, echoing
    1 KiB messages round after round while the attacks go on."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.app = TasApp(d.instance)
        self.flow = self.app.connect("10.0.0.1", ECHO_PORT)
        self.rounds = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                msg = os.urandom(1024)
                self.flow.sendall(msg)
                if recv_upto(self.flow, len(msg)) != msg:
                    raise AssertionError("keeper: echo differs")
                self.rounds += 1
                self.halt.wait(0.005)   # live, but leaves the 2 CPUs to the rest
        except Exception as e:      # reported by check()
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(30)
        self.flow.close()
        self.app.close()


class Rig:
    """A daemon under attack, with its bystanders."""

    def __init__(self, tmp_path, tas_extra="", instance=None, **limit_keys):
        self.d = Daemon(tmp_path, extra=limits(**limit_keys), instance=instance,
                        tas_extra=tas_extra).start()
        self.procs = []
        self.echo = self.ns_python(ECHO_THREADS, ECHO_PORT, "10.0.0.1")
        assert "listening" in self.echo.stdout.readline()
        self.keeper = Keeper(self.d)
        self.keeper.start()
        self.canary = TasApp(self.d.instance)
        self.pattern = os.urandom(1 << 20)
        self.canary.mem[-len(self.pattern):] = self.pattern

    def ns_python(self, script, *args):
        p = subprocess.Popen(["ip", "netns", "exec", self.d.netns, sys.executable, "-c", script,
                              *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        return p

    def attack(self, *args, uid=NOBODY):
        """Start an attack program as `uid`; returns the process."""
        p = subprocess.Popen([SYSTEM_PYTHON, ATTACKS, args[0], "/run/tas", self.d.instance,
                              *map(str, args[1:])],
                             user=uid, group=uid, extra_groups=[], cwd="/",
                             env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    @staticmethod
    def line(p):
        """The attack's next JSON line (it has printed it or exited)."""
        text = p.stdout.readline()
        if not text:
            raise AssertionError(f"attack {p.args[2:]} ended without output (status "
                                 f"{p.wait()}): {p.stderr.read()}")
        return json.loads(text)

    @staticmethod
    def finish(p):
        """Let a holding attack go (close its stdin); its last JSON line."""
        out, err = p.communicate(input="", timeout=120)
        assert p.returncode == 0, err
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def run_attack(self, *args, uid=NOBODY):
        return self.finish(self.attack(*args, uid=uid))

    def check(self):
        """The daemon still serves everyone else."""
        d = self.d
        assert d.proc.poll() is None, "daemon died:\n" + "".join(d.output)
        ping = d.ns_run("ping", "-c", "1", "-W", "5", "10.0.0.2")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        with TasApp(d.instance) as honest:
            flow = honest.connect("10.0.0.1", ECHO_PORT)
            data = os.urandom(64 << 10)
            flow.sendall(data)
            assert recv_upto(flow, len(data)) == data
            flow.close()
        start = self.keeper.rounds
        wait_until(lambda: self.keeper.rounds >= start + 10 or self.keeper.error,
                   "the keeper's connection to deliver")
        assert self.keeper.error is None, self.keeper.error
        assert bytes(self.canary.mem[-len(self.pattern):]) == self.pattern

    def stop_on_sigterm(self):
        self.keeper.stop()
        self.canary.close()
        self.d.proc.send_signal(signal.SIGTERM)
        try:
            self.d.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("daemon ignored SIGTERM for 10 s") from None
        assert self.d.proc.returncode == 0

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.keeper.is_alive():
            self.keeper.halt.set()
        self.d.stop()


@pytest.fixture
def rig(tmp_path, require_root):
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_resizing_the_segment_and_info_page_is_refused(rig):
    res = rig.run_attack("resize")
    assert res == {"segment_shrink": "EPERM", "segment_grow": "EPERM",
                   "info_shrink": "EPERM", "info_grow": "EPERM",
                   "info_map_writable": "EPERM", "info_reopen_writable": "EPERM",
                   "info_write": "EPERM"}, res
    rig.check()
    rig.stop_on_sigterm()


RING_CASES = [(r, f, v) for r in ("rx", "tx") for f in ("prod", "cons")
              for v in ("0", "1", "ones", "random")] + [("rx", "desc", "ones")]


def test_ring_header_fields(rig):
    """Every index of both queues and the descriptor, written with 0, 1,
    all ones and a random value, one attacker (and flow) per case."""
    outcomes = {}
    for i, (which, field, value) in enumerate(RING_CASES):
        port = 9000 + i
        p = rig.attack("ring", which, field, value, port)
        assert rig.line(p) == {"listening": port}
        src = rig.ns_python(SOURCE, port)
        res = rig.line(p)
        rig.finish(p)
        src.kill()
        outcomes[f"{which}.{field}={value}"] = res["detached"]
        print(which, field, value, res)
        rig.check()
    c = counters(rig.d)
    # A producer index far ahead of what we consumed is impossible: the
    # context is detached.  Indices the daemon never reads change nothing.
    detached = {case for case, gone in outcomes.items() if gone}
    must = {f"tx.prod={v}" for v in ("0", "1", "ones", "random")} | {"rx.cons=random"}
    never = {f"{q}={v}" for q in ("rx.prod", "tx.cons") for v in ("0", "1", "ones", "random")}
    assert must <= detached and not (never | {"rx.desc=ones"}) & detached, outcomes
    assert c["app_bad_ctx"] == len(detached) and c["apps_detached_bad"] == len(detached)
    print("ring attacks (detached?):", outcomes)
    rig.stop_on_sigterm()


def test_blocking_and_filled_descriptors(rig):
    p = rig.attack("blocking", 9100)
    assert rig.line(p) == {"listening": 9100}
    rig.ns_python(SOURCE, 9100)
    held = rig.line(p)
    assert held["blocking"] >= 3 and held["filled"] > 0, held
    rig.check()          # while the attacker holds everything blocking and full
    rig.finish(p)
    rig.check()
    rig.stop_on_sigterm()


def test_2000_idle_control_connections(tmp_path, require_root):
    """2000 connections that never register.  The cap (1500 here) lets the
    daemon hold over 1024 descriptors, past select()'s limit."""
    held_cap = 1500
    rig = Rig(tmp_path, connections_per_uid=held_cap, register_timeout_ms=10000)
    try:
        p = rig.attack("idle", 2000)
        held = rig.line(p)
        assert held["connected"] == 2000, held
        # Beyond the per-uid cap, connections are closed as soon as accepted.
        wait_until(lambda: counters(rig.d).get("app_conns_refused", 0) >= 2000 - held_cap,
                   "connections over the cap to be refused")
        assert len(os.listdir(f"/proc/{rig.d.proc.pid}/fd")) > 1024
        rig.check()
        over = rig.attack("listen", 8080)      # the same user, one connection too many
        _, err = over.communicate(timeout=60)
        assert over.returncode != 0 and "per-user limit" in err, err
        wait_until(lambda: counters(rig.d).get("app_register_timeouts", 0) >= held_cap,
                   "unregistered connections to be dropped")
        res = rig.finish(p)
        assert res["closed_by_daemon"] == res["held"], res
        rig.check()
        rig.stop_on_sigterm()
    finally:
        rig.close()


def test_one_user_cannot_take_every_context(rig):
    p = rig.attack("contexts")
    held = rig.line(p)
    assert held["contexts"] == CONTEXTS_PER_UID, held
    # Another user, and root, still attach and move data meanwhile.
    assert rig.run_attack("echo", ECHO_PORT, uid=OTHER_UID) == {"echoed": True}
    rig.check()
    assert counters(rig.d)["quota_refused_contexts"] >= 1
    rig.finish(p)
    rig.check()
    rig.stop_on_sigterm()


def test_unprivileged_listen_below_1024_refused(rig):
    assert rig.run_attack("listen", 80) == {"result": "EACCES"}
    assert rig.run_attack("listen", 8080) == {"result": "ok"}
    with TasApp(rig.d.instance) as root_app:
        root_app.listen(80)          # root may
    rig.check()
    rig.stop_on_sigterm()


def test_commands_and_control_message_fuzz(rig):
    """Data-path commands naming any flow (the keeper's too) with absurd
    counts, then random control messages and odd sizes: refused and counted,
    nothing else moves."""
    res = rig.run_attack("fuzz", 2000)
    assert res["sent"] > 1500, res
    c = counters(rig.d)
    assert c["app_bad_cmd"] >= 2000 and c.get("sp_errors", 0) == 0, c
    rig.check()
    rig.stop_on_sigterm()


def test_socket_mode_group_and_low_port_allow_list(tmp_path, require_root):
    """An operator restricts the app socket to root's group and lets one
    more uid listen below 1024; the stats page mode is configurable."""
    rig = Rig(tmp_path, tas_extra='socket_mode = "0660"\nsocket_group = "0"\n'
              'stats_mode = "0640"\n', low_port_uids=[OTHER_UID])
    try:
        st = os.stat(f"/run/tas/{rig.d.instance}.sock")
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, 0)
        page = os.stat(f"/dev/shm/kbstats.tas.{rig.d.instance}")
        assert page.st_mode & 0o777 == 0o640
        refused = rig.attack("listen", 8080)
        out, err = refused.communicate(timeout=60)
        assert refused.returncode != 0 and "Permission denied" in err
        os.chmod(f"/run/tas/{rig.d.instance}.sock", 0o666)   # now let them in
        assert rig.run_attack("listen", 81, uid=OTHER_UID) == {"result": "ok"}
        assert rig.run_attack("listen", 82) == {"result": "EACCES"}
        rig.check()
        rig.stop_on_sigterm()
    finally:
        rig.close()


def test_planted_links_and_files(tmp_path, require_root):
    """Links planted at every name the daemon creates: the stats page in
    /dev/shm (by uid 65534), the socket, admin socket and lock in the run
    directory (only root can write there: planted as root)."""
    victim = tmp_path / "victim"
    victim.write_text("root's data\n")
    os.chmod(tmp_path, 0o755)
    instance = unique("t")
    page = f"/dev/shm/kbstats.tas.{instance}"
    planter = subprocess.run(
        [SYSTEM_PYTHON, ATTACKS, "plant", "/run/tas", instance, "/dev/shm", str(victim),
         os.path.basename(page)], user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
        env={"PYTHONPATH": ROOT}, capture_output=True, text=True)
    assert json.loads(planter.stdout) == {os.path.basename(page): "ok"}, planter.stderr
    in_run_dir = subprocess.run(
        [SYSTEM_PYTHON, ATTACKS, "plant", "/run/tas", instance, "/run/tas", str(victim),
         f"{instance}.sock"], user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
        env={"PYTHONPATH": ROOT}, capture_output=True, text=True)
    assert json.loads(in_run_dir.stdout) == {f"{instance}.sock": "EACCES"}
    for suffix in ("sock", "admin", "lock"):
        os.symlink(victim, f"/run/tas/{instance}.{suffix}")
    rig = None
    try:
        rig = Rig(tmp_path, instance=instance)
        st = os.lstat(page)
        assert oct(st.st_mode & 0o7777) == "0o600" and st.st_uid == 0
        rig.check()
        assert victim.read_text() == "root's data\n"
        rig.stop_on_sigterm()
        assert victim.read_text() == "root's data\n"
    finally:
        if rig is not None:
            rig.close()
        for suffix in ("sock", "admin", "lock"):
            if os.path.islink(f"/run/tas/{instance}.{suffix}"):
                os.unlink(f"/run/tas/{instance}.{suffix}")
        if os.path.islink(page):
            os.unlink(page)
