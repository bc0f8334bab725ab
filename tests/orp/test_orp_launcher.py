"""kbrun --orp refuses to run anything that would not be ORP.  As root it
asks the daemon's admin socket: rings in shm, or another pool than --pool,
stop it before the program starts.  As a user other than root (uid 65534),
who cannot read
the daemon's admin socket, so libtas makes the ORP check itself
(TAS_REQUIRE_NVM): with the receive rings in the program's Strata pool a
redis SET round-trips; with rings in plain shared memory every TCP socket is
refused with ENETDOWN and a message, never a quiet kernel-socket fallback."""
import os
import subprocess
import sys

import pytest

import orp_stack as st

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"    # readable by uid 65534 (ours may not be)
PROBE = """
import errno, socket
try:
    socket.socket()
except OSError as e:
    print("refused", errno.errorcode[e.errno])
else:
    print("created")
"""


def as_nobody(d, pool, *argv):
    return [*"setpriv --reuid 65534 --regid 65534 --clear-groups".split(), SYSTEM_PYTHON, "-m",
            "kb.run", "-i", d.instance, "--orp", "--pool", pool, "--", *argv]


@pytest.fixture
def shared_pool(orp_pool):
    os.chmod(orp_pool, 0o666)    # a pool its users may write (README: ORP and users)
    st.strata(orp_pool, "run", "--", "chmod", "777", st.AOF_DIR)
    return orp_pool


def test_nonroot_orp_set_round_trips(make_daemon, procs, shared_pool):
    d = st.start_daemon(make_daemon, shared_pool, True)
    port = st.free_port()
    srv = subprocess.Popen(as_nobody(d, shared_pool, *st.redis_args(port)), cwd=st.ROOT,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs.append(srv)
    log = []
    for line in srv.stdout:
        log.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        raise AssertionError("".join(log))
    code = (f"import redis, os; r = redis.Redis(host='10.0.0.2', port={port}); "
            "v = os.urandom(300000); r.set('a', v); assert r.get('a') == v")
    r = subprocess.run(["ip", "netns", "exec", d.netns, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    st.kill(srv)


def test_nonroot_orp_without_nvm_rings_refuses_sockets(make_daemon, procs, shared_pool):
    d = st.start_daemon(make_daemon, shared_pool, False)    # rings in shm
    r = subprocess.run(as_nobody(d, shared_pool, SYSTEM_PYTHON, "-c", PROBE), cwd=st.ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["refused", "ENETDOWN"], (r.stdout, r.stderr)
    assert "receive buffers are not in this process's Strata pool" in r.stderr


def kbrun_as_root(d, *extra):
    return subprocess.run([sys.executable, "-m", "kb.run", "-i", d.instance, "--orp", *extra,
                           "--", "true"], cwd=st.ROOT, capture_output=True, text=True, timeout=60)


def test_root_orp_refused_before_the_program_starts(make_daemon, procs, orp_pool):
    d = st.start_daemon(make_daemon, orp_pool, False)
    r = kbrun_as_root(d)
    assert r.returncode != 0 and "keeps receive buffers in 'shm' memory" in r.stderr
    d2 = st.start_daemon(make_daemon, orp_pool, True)
    r = kbrun_as_root(d2, "--pool", "/dev/shm/another.pool")
    assert r.returncode != 0 and "is not the daemon's NVM pool" in r.stderr
    assert kbrun_as_root(d2).returncode == 0
