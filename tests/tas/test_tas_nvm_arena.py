"""buffers.backing = "nvm": app segments are slices of a Strata pool's ref area.

A real daemon over a pool made by `strata mkfs`; real apps (libtas under
tas-run, tas/app.py) that map the pool; real Strata processes whose logs the
daemon's quarantine waits for.  Holding Strata's pool lock (flock, as every
Strata process takes it) stalls recovery, which makes "still quarantined
while undigested" observable without timing.
"""
import errno
import fcntl
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest

from bindings._tasfp import ffi, lib
from libtas_helpers import ROOT, counters, finish, in_peer, tas_run
from tasd import Daemon, wait_until
from test_libtas import ECHO_CLIENT, ECHO_SERVER
from test_tas_tcp import linux_to_tas, peer_python, tas_to_linux

SEGMENT = 4 << 20


def strata(pool, *args):
    r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", str(pool), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def make_pool(tmp_path):
    """A 256 MiB pool whose ref area holds the table and three segments.
    Strata layout v2 sizes the ref area with --ref-size; before it, the ref
    area is pool/16 (16 MiB here)."""
    pool = tmp_path / "pool"
    ref = ["--ref-size", "32M"] if "--ref-size" in strata(pool, "mkfs", "--help") else []
    strata(pool, "mkfs", "--size", "256M", *ref)
    with open(pool, "rb") as f:
        sb = ffi.from_buffer("struct strata_super *", f.read(4096))
        assert sb.ref_bytes >= 4096 + 3 * SEGMENT, f"ref area of {sb.ref_bytes} bytes"
    return pool


def nvm_config(pool, segment=SEGMENT):
    return (f'\n[buffers]\nbacking = "nvm"\napp_segment = {segment}\n'
            f'[nvm]\npool_path = "{pool}"\n')


def rows(pool):
    """The ownership table's used rows as stored in the pool file:
    [(pid, (state, off, len, ref area offset, ref area bytes))]."""
    with open(pool, "rb") as f:
        sb = ffi.from_buffer("struct strata_super *", f.read(4096))
        f.seek(sb.off_ref)
        t = ffi.from_buffer("struct tas_arena_table *", f.read(4096))
        assert t.magic == lib.TAS_ARENA_MAGIC
        return [(t.row[i].pid, (t.row[i].state, t.row[i].off, t.row[i].len, sb.off_ref,
                                sb.ref_bytes))
                for i in range(t.nrows) if t.row[i].state != lib.TAS_ARENA_FREE]


def table(pool):
    """{pid: row} of the used rows (one app per pid)."""
    return dict(rows(pool))


def arena(d):
    r = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, "arena", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def pool_maps(pid, pool):
    """[(file offset, length)] of pid's mappings of the pool file."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == str(pool):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((int(parts[2], 16), hi - lo))
    return out


def maps_pool(pid, pool):
    return bool(pool_maps(pid, pool))


class StrataLockHeld:
    """Hold the pool's Strata lock: recovery (digest) waits until released."""

    def __init__(self, pool):
        self.fd = os.open(pool, os.O_RDWR)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# An app on tas/app.py that also writes a Strata file (so its log slot holds
# an undigested entry), then waits; "detach" on stdin detaches from TAS.
APP = """
import sys
from tas.app import TasApp
from strata import api as strata
a = TasApp(sys.argv[1])
if sys.argv[3] == "fork":       # a child with the slice mapped and its own Strata log
    import os, time
    if os.fork() == 0:
        from tas.app import lib
        os.close(lib.tas_app_ctl_fd(a.handle))   # as libtas's fork child drops it
        strata.attach(sys.argv[2])
        strata.write_file("/from-child", b"child")
        print("child", os.getpid(), flush=True)
        time.sleep(600)
        os._exit(0)
    print(sys.stdin.readline().strip(), flush=True)   # "go" once the child is up
if sys.argv[3] == "strata":
    strata.attach(sys.argv[2])
    strata.write_file("/from-app", b"kept by recovery")
print("up", flush=True)
for line in sys.stdin:
    if line.strip() == "detach":
        a.close()
        print("detached", flush=True)
"""


def start_app(procs, d, pool, with_strata, mode=None):
    p = subprocess.Popen([sys.executable, "-c", APP, d.instance, str(pool),
                          mode or ("strata" if with_strata else "plain")],
                         cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    procs.append(p)
    if mode == "fork":
        word, child = p.stdout.readline().split()
        assert word == "child"
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "go"
        p.child = int(child)
    assert p.stdout.readline().strip() == "up"
    return p


@pytest.fixture
def pool(tmp_path):
    return make_pool(tmp_path)


@pytest.fixture
def nvm_daemon(tmp_path, pool):
    d = Daemon(tmp_path, extra=nvm_config(pool), hugepages="no").start()
    yield d
    d.stop()


def test_tas_app_segment_is_a_slice_of_the_pool(nvm_daemon, pool, procs):
    """tas/app.py maps its segment from the pool; the daemon maps the pool;
    the table row names the app's pid; echo works through the rings."""
    from tas.app import TasApp
    d = nvm_daemon
    with TasApp(d.instance) as a:
        state, off, ln, ref_off, ref_bytes = table(pool)[os.getpid()]
        assert state == lib.TAS_ARENA_LIVE and ln == SEGMENT
        assert ref_off + 4096 <= off and off + ln <= ref_off + ref_bytes
        assert (off, SEGMENT) in pool_maps(os.getpid(), pool)      # the app: its slice
        assert (ref_off, ref_bytes) in pool_maps(d.proc.pid, pool)  # the daemon: the arena
        # The fast path deposits received bytes in the pool file itself.
        lst = a.listen(5009)
        payload = random.Random(7).randbytes(100_000)
        peer = peer_python(d, "import random, socket; s=socket.create_connection(('10.0.0.2',5009)); "
                           "s.sendall(random.Random(7).randbytes(100_000)); s.recv(1)")
        procs.append(peer)
        flow = a.accept(lst)
        while flow.rx_ready < len(payload):
            a.wait()
        with open(pool, "rb") as f:
            f.seek(off + flow.rx_off)
            assert f.read(len(payload)) == payload
        assert flow.recv(len(payload)) == payload
        flow.close()
        peer.wait()
        linux_to_tas(d, a, 5010, 8 << 20, 10)
        tas_to_linux(d, a, 5011, 8 << 20, 11)
    # A detached app that keeps running and owns no Strata log: freed at once.
    app = start_app(procs, d, pool, with_strata=False)
    assert table(pool)[app.pid][0] == lib.TAS_ARENA_LIVE
    freed = counters(d)["arena_slices_freed"]
    app.stdin.write("detach\n")
    app.stdin.flush()
    assert app.stdout.readline().strip() == "detached"
    wait_until(lambda: app.pid not in table(pool), "the detached app's slice to be freed")
    wait_until(lambda: counters(d)["arena_slices_freed"] > freed, "the free to be counted")
    assert not maps_pool(app.pid, pool)
    c = counters(d)
    assert c["arena_slices_taken"] >= 2 and c["arena_slices_freed"] >= 1


def test_full_arena_refuses_registration(nvm_daemon, pool):
    """No room for another segment: the app is refused with ENOMEM (counted),
    the apps already attached keep their slices."""
    from tas.app import TasApp, TasError
    d = nvm_daemon
    apps = []
    try:
        with pytest.raises(TasError) as e:
            for _ in range(64):
                apps.append(TasApp(d.instance))
        assert "Cannot allocate memory" in str(e.value)
        assert len(apps) >= 3                       # the ref area holds at least three
        used = rows(pool)
        assert [pid for pid, _ in used] == [os.getpid()] * len(apps)
        assert all(r[0] == lib.TAS_ARENA_LIVE for _, r in used)
        assert len(apps) == (used[0][1][4] - 4096) // SEGMENT
        assert len(arena(d)["slices"]) == len(apps)
        assert counters(d)["arena_full"] == 1
        # A detached slice is freed in the background; a full arena does not
        # wait for that: the next registration looks at once and gets it.
        apps.pop().close()
        apps.append(TasApp(d.instance))
        assert counters(d)["arena_full"] == 1
    finally:
        for a in apps:
            a.close()
    wait_until(lambda: counters(d)["arena_slices_freed"] == len(apps) + 1,
               "the slices to be freed")


def test_libtas_echo_with_rings_in_the_pool(nvm_daemon, pool, procs):
    d = nvm_daemon
    nbytes = 4 << 20
    srv = tas_run(procs, d, sys.executable, "-c", ECHO_SERVER, "7001")
    assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
    state, off = table(pool)[srv.pid][:2]
    assert state == lib.TAS_ARENA_LIVE
    assert (off, SEGMENT) in pool_maps(srv.pid, pool)    # libtas mapped (pool fd, seg_off)
    cli = in_peer(procs, d, sys.executable, "-c", ECHO_CLIENT, "10.0.0.2", "7001",
                  str(nbytes), "1")
    r = json.loads(finish(cli, "Linux client").strip().splitlines()[-1])
    assert finish(srv, "echo server under libtas").strip().splitlines()[-1] == str(nbytes)
    assert r == {"bytes": nbytes, "same": True}
    assert counters(d)["tcp_rx_bytes"] >= nbytes


# With libstrata loaded, libtas offers its slice to strata_nvm_map at attach
# and withdraws it at detach: a second registration of the same bytes is
# refused (EINVAL, overlap) while libtas holds it and accepted after.
NVM_MAP_APP = r"""
import os, sys
# global, as under LD_PRELOAD: libtas looks strata_nvm_map up with dlsym(RTLD_DEFAULT)
flags = sys.getdlopenflags()
sys.setdlopenflags(flags | os.RTLD_GLOBAL)
from strata import api as strata
st, sffi = strata.lib(), strata.ffi()
sys.setdlopenflags(flags)
strata.attach(sys.argv[2])
from tas.app import TasApp, ffi, lib
a = TasApp(sys.argv[1])
va = int(ffi.cast("uintptr_t", lib.tas_app_base(a.handle)))
off = next(int(l.split()[2], 16) for l in open("/proc/self/maps") if int(l.split("-")[0], 16) == va)
fd = os.open(sys.argv[2], os.O_RDWR)
held = st.strata_nvm_map(fd, off, sffi.cast("void *", va), 4096), sffi.errno
a.close()
print(off, held[0], held[1], st.strata_nvm_map(fd, off, sffi.cast("void *", va), 4096))
"""


def test_libtas_registers_its_slice_with_libstrata(nvm_daemon, pool):
    r = subprocess.run([sys.executable, "-c", NVM_MAP_APP, nvm_daemon.instance, str(pool)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    off, held, err, after = map(int, r.stdout.split())
    assert off > 0 and off % 4096 == 0         # libtas mapped the pool at its slice
    assert (held, err) == (-1, errno.EINVAL)   # libtas had registered these bytes
    assert after == 0                          # and withdrew them at detach


def test_killed_app_slice_quarantined_until_recovered(nvm_daemon, pool, procs):
    d = nvm_daemon
    app = start_app(procs, d, pool, with_strata=True)
    row = table(pool)[app.pid]
    lock = StrataLockHeld(pool)
    try:
        app.kill()
        app.wait()
        wait_until(lambda: counters(d)["arena_quarantines"] >= 1, "the slice to be quarantined")
        a = arena(d)
        mine = [s for s in a["slices"] if s["pid"] == app.pid]
        assert mine and mine[0]["state"] == "quarantined" and not mine[0]["owner_alive"]
        assert a["quarantined_bytes"] >= row[2]
        assert table(pool)[app.pid][0] == lib.TAS_ARENA_QUARANTINED   # persisted
        shown = subprocess.run([sys.executable, "-m", "tas.ctl", "-i", d.instance, "arena"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
        assert f"0 live slice(s), 1 quarantined ({row[2]} bytes)" in shown, shown
        assert "digest running" in shown    # stalled on the Strata lock we hold
        assert str(app.pid) in shown
    finally:
        lock.release()
    wait_until(lambda: counters(d)["arena_slices_freed"] >= 1, "the slice to be freed after recovery")
    assert app.pid not in table(pool)
    c = counters(d)
    assert c["arena_digests"] >= 1 and c["arena_slices_freed"] >= 1
    assert c["arena_quarantined_bytes"] == 0
    assert strata(pool, "cat", "/strata/from-app") == "kept by recovery"


def test_forked_strata_child_keeps_the_slice_reserved(nvm_daemon, pool, procs):
    """The owner dies, but a child it forked maps the slice and owns a Strata
    log (it could log references into it): the slice waits for the child."""
    d = nvm_daemon
    app = start_app(procs, d, pool, with_strata=False, mode="fork")
    try:
        assert maps_pool(app.child, pool)
        app.kill()
        app.wait()
        wait_until(lambda: counters(d)["arena_quarantines"] >= 1, "the slice to be quarantined")
        # The dead owner owned no Strata log (retiring it ran a reclaim pass
        # at once); what holds the slice is the child.
        mine = [s["state"] for s in arena(d)["slices"] if s["pid"] == app.pid]
        assert mine == ["quarantined"]
        assert table(pool)[app.pid][0] == lib.TAS_ARENA_QUARANTINED
    finally:
        os.kill(app.child, signal.SIGKILL)
    wait_until(lambda: counters(d)["arena_slices_freed"] >= 1, "the slice after the child died")
    assert app.pid not in table(pool)
    assert strata(pool, "cat", "/strata/from-child") == "child"


def forget_killed(d):
    """What a SIGKILLed daemon leaves behind: run files, stats page, EAL dir."""
    for path in glob.glob(f"/run/tas/{d.instance}.*") + [f"/dev/shm/kbstats.tas.{d.instance}"]:
        if os.path.exists(path):
            os.unlink(path)
    shutil.rmtree(f"/var/run/dpdk/{d.instance}", ignore_errors=True)


def test_daemon_sigkill_restart_reconciles_the_table(tmp_path, pool, procs):
    cfg = nvm_config(pool)
    d = Daemon(tmp_path, extra=cfg, hugepages="no").start()
    try:
        alive = start_app(procs, d, pool, with_strata=False)
        dead = start_app(procs, d, pool, with_strata=True)
        rows = table(pool)
        d.proc.kill()
        d.proc.wait()
    finally:
        d.stop()
        forget_killed(d)
    dead.kill()
    dead.wait()
    lock = StrataLockHeld(pool)
    d2 = Daemon(tmp_path, extra=cfg, hugepages="no").start()
    try:
        c = counters(d2)
        assert c["arena_rows_reconciled"] == 2
        # Recovery is stalled: both slices stay reserved, a new app gets neither.
        with __import__("tas.app", fromlist=["TasApp"]).TasApp(d2.instance):
            now = table(pool)
            new = now[os.getpid()]
            for pid in (alive.pid, dead.pid):
                assert now[pid][0] == lib.TAS_ARENA_QUARANTINED
                lo, hi = rows[pid][1], rows[pid][1] + rows[pid][2]
                assert new[1] + new[2] <= lo or new[1] >= hi
        lock.release()
        wait_until(lambda: dead.pid not in table(pool), "the dead app's slice to be freed")
        assert table(pool)[alive.pid][0] == lib.TAS_ARENA_QUARANTINED   # still maps it
        assert maps_pool(alive.pid, pool)
        assert strata(pool, "cat", "/strata/from-app") == "kept by recovery"
        alive.kill()
        alive.wait()
        wait_until(lambda: alive.pid not in table(pool), "the live app's slice after it exits")
        a = arena(d2)
        assert a["quarantined_bytes"] == 0
    finally:
        lock.release()
        d2.stop()


def test_daemon_stop_leaves_running_apps_their_slices(tmp_path, pool, procs):
    """SIGTERM: the daemon stops in order but an app that still runs keeps
    its row (not quarantined, not freed); the next daemon reserves it until
    the app exits."""
    cfg = nvm_config(pool)
    d = Daemon(tmp_path, extra=cfg, hugepages="no").start()
    try:
        app = start_app(procs, d, pool, with_strata=False)
    finally:
        assert d.stop() == 0
    assert table(pool)[app.pid][0] == lib.TAS_ARENA_LIVE
    d2 = Daemon(tmp_path, extra=cfg, hugepages="no").start()
    try:
        assert counters(d2)["arena_rows_reconciled"] == 1
        assert table(pool)[app.pid][0] == lib.TAS_ARENA_QUARANTINED
        assert maps_pool(app.pid, pool)
        app.kill()
        app.wait()
        wait_until(lambda: app.pid not in table(pool), "the slice after the app exited")
    finally:
        d2.stop()


def run_daemon(tmp_path, extra):
    cfg = tmp_path / "nvm.toml"
    cfg.write_text(f'[tas]\ninstance = "nvmbad{os.getpid() % 1000}"\n' + extra)
    return subprocess.run([sys.executable, "-m", "tas.daemon", "-c", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_bad_pool_config_names_the_key(tmp_path):
    missing = tmp_path / "missing.pool"
    r = run_daemon(tmp_path, nvm_config(missing))
    assert r.returncode == 1 and f"nvm.pool_path = '{missing}'" in r.stderr, r.stderr
    assert "No such file" in r.stderr
    junk = tmp_path / "junk.pool"
    junk.write_bytes(os.urandom(1 << 20))
    r = run_daemon(tmp_path, nvm_config(junk))
    assert r.returncode == 1 and "not a Strata pool" in r.stderr, r.stderr
    assert f"nvm.pool_path = '{junk}'" in r.stderr
    pool = make_pool(tmp_path)
    r = run_daemon(tmp_path, nvm_config(pool, segment=1 << 30))
    assert r.returncode == 1 and "buffers.app_segment" in r.stderr, r.stderr
