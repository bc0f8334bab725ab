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


# On the whole stack: for each connection, Python's subprocess (vfork, then
# close_range in the child) starts a shell with the connection as stdin and
# stdout; the shell appends the request to a Strata file and answers.  The
# server prints each shell's exit status; their stderr goes to argv[3].
SPAWN_SERVICE = r"""
import socket, subprocess, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = s.accept()
    with open(sys.argv[3], "a") as err:
        p = subprocess.run(["/bin/sh", "-c",
                            'read l && echo "$l" >> /strata/redis/spawned && echo "ok $l"'],
                           stdin=c, stdout=c, stderr=err, timeout=60)
    c.close()
    print(p.returncode, flush=True)
"""
CLIENT_LINES = ("import socket, sys\n"
                "for i in range(int(sys.argv[2])):\n"
                "    s = socket.create_connection(('10.0.0.2', int(sys.argv[1])))\n"
                "    s.sendall(b'req%d\\n' % i)\n"
                "    try:\n"
                "        r = b''.join(iter(lambda: s.recv(100), b'')).decode().strip()\n"
                "    except ConnectionResetError:\n"
                "        r = 'reset'\n"
                "    print(r or 'eof', flush=True)\n")


def spawn_service(d, procs, pool, n, errlog):
    """SPAWN_SERVICE under kbrun --orp and a kernel client making n
    connections: (the client's replies, the shells' exit statuses)."""
    port = st.free_port()
    srv = subprocess.Popen([sys.executable, "-m", "kb.run", "-i", d.instance, "--orp", "--",
                            sys.executable, "-c", SPAWN_SERVICE, str(port), str(n), str(errlog)],
                           cwd=st.ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(srv)
    assert srv.stdout.readline().strip() == "listening", srv.communicate(timeout=30)
    r = subprocess.run(["ip", "netns", "exec", d.netns, sys.executable, "-c", CLIENT_LINES,
                        str(port), str(n)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    statuses = [srv.stdout.readline().strip() for _ in range(n)]
    srv.communicate(timeout=30)
    return r.stdout.split("\n")[:n], statuses


def test_subprocess_on_the_whole_stack_serves_and_stores(make_daemon, procs, orp_pool, tmp_path):
    """Each shell is a process of its own on the daemon (its libtas relays
    the inherited connection), so it takes a slice of the NVM arena:
    16 MiB slices leave room for all."""
    d, n = st.start_daemon(make_daemon, orp_pool, True, app_segment="16M"), 3
    replies, statuses = spawn_service(d, procs, orp_pool, n, tmp_path / "err")
    assert replies == [f"ok req{i}" for i in range(n)], (tmp_path / "err").read_text()
    assert statuses == ["0"] * n
    stored = st.strata(orp_pool, "run", "--", "cat", f"{st.AOF_DIR}/spawned")
    assert stored.split() == [f"req{i}" for i in range(n)]


def test_a_full_nvm_arena_is_said_not_swallowed(make_daemon, procs, orp_pool, tmp_path):
    """Slices of 128 MiB: the server's is the only one the 256 MiB area
    holds, so the shell's relay is refused.  The shell's descriptors stay
    placeholders (its read fails, it stores nothing), its stderr says why,
    the daemon names the keys, and the client sees the connection end
    without a reply; before, the relay's messages went to /dev/null and the
    shell read EOF and answered into a socketpair nobody relayed."""
    d = st.start_daemon(make_daemon, orp_pool, True, app_segment="128M")
    replies, statuses = spawn_service(d, procs, orp_pool, 1, tmp_path / "err")
    assert replies[0] in ("reset", "eof") and statuses != ["0"]
    err = (tmp_path / "err").read_text()
    assert "could not take over a connection inherited over fork" in err, err
    assert "Cannot allocate memory" in err, err
    d.poll_output()
    said = "".join(d.output)
    assert "the NVM arena in" in said and "buffers.app_segment" in said, said[-2000:]
    r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", orp_pool, "run", "--",
                        "cat", f"{st.AOF_DIR}/spawned"], cwd=st.ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "No such file" in r.stderr
