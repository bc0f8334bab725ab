"""zIO over TAS: libtas registers received ring pages with zIO before it
copies out of them, holds consumed pages while zIO intermediates depend on
them, and releases them (forced when the window runs low) without stalling.

A real C server (orp_app.c: plain socket calls, malloc'd buffers) runs under
`tas-run -- zio run --` (preload order libzio:libtas) against a real daemon;
a Linux client in the peer namespace sends large seeded values.  Every test
checks the bytes (SHA-256) and the counters of libtas (kbstats.libtas.<pid>,
`tasctl app-stats`), zIO (kbstats.zio.<pid>) and the daemon.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from bindings import stats
from libtas_helpers import READ_ALL, ROOT, counters, in_peer
from tasd import Daemon

VLEN = 256 * 1024

# Sends NVAL seeded values; in echo mode reads them back meanwhile.
CLIENT = READ_ALL + """
import hashlib, json, random, socket, sys, threading
port, nval, vlen, seed, echo = (int(a) for a in sys.argv[1:6])
data = random.Random(seed).randbytes(nval * vlen)
s = socket.create_connection(("10.0.0.2", port))
def send():
    try:
        s.sendall(data)
    except ConnectionError:      # the server may stop reading and close
        pass
t = threading.Thread(target=send)
t.start()
got = hashlib.sha256()
n = read_all(s, got.update, 1 << 20, len(data)) if echo else 0
t.join()
s.close()
print(json.dumps({"sent": hashlib.sha256(data).hexdigest(), "echoed": got.hexdigest(), "n": n}))
"""


def libzio_has(symbol):
    lib = os.path.join(ROOT, "zio", "libzio.so")
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True)
    return f" {symbol}\n" in out.stdout


@pytest.fixture(scope="module")
def orp_app(tmp_path_factory):
    exe = tmp_path_factory.mktemp("orp") / "orp_app"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(exe),
                    os.path.join(ROOT, "tests", "tas", "orp_app.c")], check=True)
    return str(exe)


def run_server(procs, d, *argv, zio_args=()):
    """orp_app under tas-run and zio run (LD_PRELOAD=libzio:libtas).

    glibc's own malloc settings: once it raises its mmap threshold (after
    the first free of a mapped chunk) the 256 KiB value buffers come from
    the brk heap, where an intermediate can straddle two VMAs (libzio fills
    it in pieces, tests/zio/test_brk_heap.py)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                          sys.executable, "-m", "zio.cli", "run", *zio_args, "--", *argv],
                         cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    procs.append(p)
    assert p.stdout.readline() == "listening\n", p.stderr.read()
    return p


def serve(procs, d, app, mode, port, nval, *extra, vlen=VLEN, nread=None, zio_args=()):
    """Run one transfer; returns (client report, server lines, libtas, zio)."""
    before = counters(d)
    srv = run_server(procs, d, app, mode, str(port), str(nval), str(vlen), *extra,
                     zio_args=zio_args)
    nread = nval if nread is None else nread
    cli = in_peer(procs, d, sys.executable, "-c", CLIENT, str(port), str(nval), str(vlen),
                  str(port), "1" if mode == "echo" else "0")
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    lines = [srv.stdout.readline() for _ in range(2)]
    assert lines[-1] == "done\n", (lines, srv.stderr.read())
    lt = stats.read("libtas", str(srv.pid))
    z = stats.read("zio", str(srv.pid))
    print("libtas", lt, "\nzio", z)
    assert z["uffd_errors"] == 0   # every fill of an intermediate was done
    tasctl = subprocess.run([sys.executable, "-m", "tas.ctl", "app-stats", str(srv.pid)],
                            cwd=ROOT, capture_output=True, text=True)
    assert tasctl.returncode == 0 and "rx_forced_releases" in tasctl.stdout, tasctl.stderr
    srv.communicate("\n", timeout=60)
    assert srv.returncode == 0
    assert not os.path.exists(stats.page_path("libtas", str(srv.pid))), "page left behind"
    after = counters(d)
    # the bytes went through TAS, not a kernel-socket fallback
    assert after["tcp_rx_bytes"] - before["tcp_rx_bytes"] >= nread * vlen
    return json.loads(out), lines, lt, z


def test_recv_copies_elided_values_written_to_file(make_daemon, procs, orp_app, tmp_path):
    d = make_daemon().start()
    nval = 32
    outf = tmp_path / "values"
    rep, lines, lt, z = serve(procs, d, orp_app, "sink", 7101, nval, str(outf), "0")
    assert hashlib.sha256(outf.read_bytes()).hexdigest() == rep["sent"]
    # libtas registered ring pages, zIO elided the copies out of them
    assert lt["rx_bytes"] == nval * VLEN
    assert lt["rx_registered_bytes"] > 0
    assert z["copies_elided"] > 0 and z["bytes_elided"] > 0
    assert lt["rx_released_checked_bytes"] > 0
    assert lt["rx_bytes_held"] == 0      # close gave back the rest
    assert lines[0] == "fstat-sock 111\n"   # fstat, fstatat(AT_EMPTY_PATH), statx
    if libzio_has("zio_release_if_unshared"):
        # pages stayed held while the buffer depended on them, and the file
        # was written from the originals (the ring) instead of the buffer
        assert lt["rx_release_busy"] > 0
        assert z["outputs_resolved"] > 0
    else:
        # no try-release: zio_release fills at once, nothing is ever held
        assert lt["rx_release_busy"] == 0
        assert z["pages_filled"] > 0


def test_write_of_intermediate_to_tas_socket_is_substituted(make_daemon, procs, orp_app):
    d = make_daemon().start()
    nval = 16
    rep, lines, lt, z = serve(procs, d, orp_app, "echo", 7102, nval)
    assert rep["n"] == nval * VLEN and rep["echoed"] == rep["sent"]
    # fstat says socket, so libzio sent the originals in place of the copy
    # of each value (without S_IFSOCK it would have materialised the copy)
    assert lines[0] == "fstat-sock 111\n"
    assert z["copies_elided"] > 0
    assert z["outputs_resolved"] > 0
    assert lt["rx_bytes"] == nval * VLEN and lt["rx_bytes_held"] == 0


@pytest.mark.parametrize("keep", ["0", "1"])
def test_rx_buf_smaller_than_a_value(tmp_path, require_root, procs, orp_app, keep):
    """A value does not fit the ring: its pages stay held (its buffer is in
    use) until the window runs low, then libtas forces the release (zIO fills
    the buffer) before it sleeps.  keep=1 holds every value to the end."""
    # without it libtas would release at once and nothing would be held
    assert libzio_has("zio_release_if_unshared"), "the built libzio lacks zio_release_if_unshared"
    d = Daemon(tmp_path, extra="[buffers]\nrx_buf = 65536\n").start()
    try:
        nval = 24
        outf = tmp_path / "values"
        # Elided copies, not links: below ZIO_LINK_MAX a copy into resident
        # memory is done plainly (and linked), so with reused buffers only
        # the first values' copies were elided, 0-4 of them, and none in
        # about a third of the runs.  Holds need intermediates.
        rep, lines, lt, z = serve(procs, d, orp_app, "sink", 7103, nval, str(outf), keep,
                                  zio_args=("--link-max", "0"))
        assert hashlib.sha256(outf.read_bytes()).hexdigest() == rep["sent"]
        assert lt["rx_bytes"] == nval * VLEN
        assert lt["rx_forced_releases"] > 0 and lt["rx_forced_bytes"] > 0
        assert lt["rx_release_busy"] > 0
        assert z["copies_elided"] > 0
        assert lt["rx_bytes_held"] == 0
    finally:
        d.stop()


def test_fork_forces_release(make_daemon, procs, orp_app, tmp_path):
    """Values held in memory (their ring pages held) when the server forks:
    the release is forced before fork, nothing is lost."""
    # without it libtas would release at once and nothing would be held
    assert libzio_has("zio_release_if_unshared"), "the built libzio lacks zio_release_if_unshared"
    d = make_daemon().start()
    nval, vlen = 4, 32 * 1024     # 128 KiB of a 256 KiB ring: no pressure
    outf = tmp_path / "values"
    rep, lines, lt, z = serve(procs, d, orp_app, "sink", 7104, nval, str(outf), "1", "2",
                              vlen=vlen)
    assert hashlib.sha256(outf.read_bytes()).hexdigest() == rep["sent"]
    assert lt["rx_forced_fork"] >= 1 and lt["rx_forced_pressure"] == 0
    # libtas's prepare handler runs before zIO's (registered later): the
    # forced release's zio_release fills and drops the held pages'
    # dependents, so whether zIO's own fork handler still finds entries
    # (fork_resolves) depends only on copies unrelated to the ring.
    assert z["api_release"] >= 1 and z["entries_live"] == 0
    assert lt["rx_bytes_held"] == 0


def test_close_with_unread_bytes_unregisters_the_ring(make_daemon, procs, orp_app, tmp_path):
    """Pages registered ahead of the reads are no zIO originals after close
    (the daemon gives the ring to the next connection)."""
    d = make_daemon().start()
    nval, vlen = 8, 64 * 1024
    outf = tmp_path / "values"
    rep, lines, lt, z = serve(procs, d, orp_app, "sink", 7105, nval, str(outf), "0", "0", "1",
                              vlen=vlen, nread=1)
    assert outf.stat().st_size == vlen
    assert lt["rx_bytes"] == vlen and lt["rx_registered_bytes"] > vlen
    assert z["entries_live"] == 0
    assert lt["rx_bytes_held"] == 0
