"""Strata descriptors handed to other processes in the two ways exec does
not cover: over a Unix socket (SCM_RIGHTS) and by posix_spawn file actions.
Each case runs the same worker on tmpfs and on /strata and compares what
it saw; a receiver that cannot use a Strata fd gets EBADF, and no file is
ever made on the kernel's file system under the mount point."""
import os
import subprocess
import sys

import pytest

from strata_helpers import ROOT, fsck_clean, shim_env

WORKER = os.path.join(ROOT, "tests", "strata", "scm_worker.py")


def pass_fd(env_send, env_recv, d, tmp_path):
    sock = str(tmp_path / f"s{len(os.listdir(tmp_path))}.sock")
    r = subprocess.Popen([sys.executable, WORKER, "recv", sock], env=env_recv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert r.stdout.readline() == "ready\n"
        s = subprocess.run([sys.executable, WORKER, "send", sock, d], env=env_send, capture_output=True,
                           text=True, timeout=60)
        assert s.returncode == 0, s.stderr
        rout, rerr = r.communicate(timeout=60)
    finally:
        r.kill()
    assert r.returncode == 0, rerr
    return rout + s.stdout, rerr


def read_back(env, path):
    return subprocess.run([sys.executable, "-c", f"import sys; sys.stdout.buffer.write(open({path!r}, 'rb').read())"],
                          env=env, capture_output=True, check=True, timeout=60).stdout


@pytest.mark.parametrize("calls", ["sendmsg", "sendmmsg"])
def test_fd_over_unix_socket_same_as_tmpfs(pool, tmp_path, calls):
    env = shim_env(pool, SCM_WORKER_MMSG="1" if calls == "sendmmsg" else "0")
    tmpfs = tmp_path / "tmpfs"
    tmpfs.mkdir()
    want, _ = pass_fd(env, env, str(tmpfs), tmp_path)
    got, _ = pass_fd(env, env, "/strata", tmp_path)
    assert "recv offset 12" in want and "from receiver" in want
    assert got == want
    assert read_back(env, "/strata/shared.txt") == (tmpfs / "shared.txt").read_bytes()
    fsck_clean(pool)


def test_receiver_without_libstrata_gets_ebadf(pool, tmp_path):
    env = shim_env(pool)
    plain = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    got, _ = pass_fd(env, plain, "/strata", tmp_path)
    assert "recv error EBADF" in got  # its first use fails; nothing written anywhere
    assert read_back(env, "/strata/shared.txt") == b"from sender\nsender again\n"


def test_receiver_with_another_pool_gets_ebadf(pool, tmp_path):
    other = str(tmp_path / "other.pool")
    subprocess.run([sys.executable, "-m", "strata.cli", "--pool", other, "mkfs", "--size", "64M", "--slots", "4",
                    "--log-size", "1M"], cwd=ROOT, check=True, capture_output=True)
    got, err = pass_fd(shim_env(pool), shim_env(other), "/strata", tmp_path)
    assert "recv error EBADF" in got and "belongs to another pool" in err
    assert read_back(shim_env(pool), "/strata/shared.txt") == b"from sender\nsender again\n"


def test_posix_spawn_file_actions_same_as_tmpfs(pool, tmp_path):
    # the mount point exists on the kernel's file system: glibc's own open in
    # the child would silently create files there
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = shim_env(pool, STRATA_MOUNT=str(mnt))
    tmpfs = tmp_path / "tmpfs"
    tmpfs.mkdir()
    want = subprocess.run([sys.executable, WORKER, "spawn", str(tmpfs)], env=env, capture_output=True,
                          timeout=60)
    got = subprocess.run([sys.executable, WORKER, "spawn", str(mnt)], env=env, capture_output=True, timeout=60)
    assert want.returncode == 0 and got.returncode == 0, (want.stderr, got.stderr)
    assert b"echo wrote b'from a spawned echo\\n'" in want.stdout and b"open action error ENOENT" in want.stdout
    assert got.stdout.replace(str(mnt).encode(), b"D") == want.stdout.replace(str(tmpfs).encode(), b"D")
    assert os.listdir(mnt) == []  # everything went to Strata
    plain = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    assert subprocess.run(["ls", str(mnt)], env=plain, capture_output=True, text=True).stdout == ""
    fsck_clean(pool)


@pytest.mark.parametrize("action", ["chdir", "fchdir"])
def test_posix_spawn_chdir_into_strata_fails_loudly(pool, action):
    code = f"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
fa = ctypes.create_string_buffer(256)
assert libc.posix_spawn_file_actions_init(fa) == 0
os.mkdir('/strata/d')
if {action!r} == 'chdir':
    assert libc.posix_spawn_file_actions_addchdir_np(fa, b'/strata/d') == 0
else:
    fd = os.open('/strata/d', os.O_RDONLY)
    assert libc.posix_spawn_file_actions_addfchdir_np(fa, fd) == 0
pid = ctypes.c_int()
argv = (ctypes.c_char_p * 2)(b'/bin/true', None)
rc = libc.posix_spawn(ctypes.byref(pid), b'/bin/true', fa, None, argv, None)
print(errno.errorcode.get(rc, rc))
"""
    r = subprocess.run([sys.executable, "-c", code], env=shim_env(pool), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ENOTSUP"
