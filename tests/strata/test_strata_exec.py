"""Strata descriptors across exec: shell redirections and pipelines, Python
subprocess/posix_spawn/system/popen, close-on-exec, and loud failure where a
descriptor cannot be carried.  Each case runs the same program on /strata and
on tmpfs (both under the shim) and compares the outputs."""
import errno
import json
import os
import subprocess
import sys

import pytest

from strata_helpers import fsck_clean, shim_env, strata_cli

HERE = os.path.dirname(os.path.abspath(__file__))


def run(pool, argv):
    r = subprocess.run(argv, env=shim_env(pool), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_shell_redirections_match_tmpfs(pool, tmp_path, shell):
    script = os.path.join(HERE, "redirections.sh")
    rc, out, err = run(pool, [shell, "-c", f"mkdir /strata/d && exec {shell} {script} /strata/d"])
    rc_t, out_t, err_t = run(pool, [shell, script, str(tmp_path)])
    assert (rc, err) == (rc_t, err_t.replace(str(tmp_path), "/strata/d"))
    assert out == out_t
    assert "seq rc=0\n1\n2\n3\n4\n5\n5\nhello\n" in out  # the two reports
    assert "one\ntwo\nthree\n" in out                     # a child wrote between the shell's writes
    fsck_clean(pool)


def test_python_spawn_paths_match_tmpfs(pool, tmp_path):
    worker = os.path.join(HERE, "spawn_worker.py")
    rc, out, err = run(pool, ["sh", "-c", f"mkdir /strata/py && exec {sys.executable} {worker} /strata/py"])
    assert rc == 0, err
    rc_t, out_t, err_t = run(pool, [sys.executable, worker, str(tmp_path)])
    assert rc_t == 0, err_t
    got, want = json.loads(out.splitlines()[-1]), json.loads(out_t.splitlines()[-1])
    assert got == want
    assert want["pass_fds"] == "parent\nchild\nparent2\n" and want["cloexec"] == "via8\n"
    fsck_clean(pool)


def test_descriptor_that_cannot_be_carried_fails_loudly(pool):
    """A program without libstrata, or attached to another pool, gets EBADF
    (and, with libstrata, a message) -- never a placeholder that swallows
    the bytes."""
    rc, out, err = run(pool, ["sh", "-c",
                              "exec 3>/strata/loud.txt; "
                              "env -u LD_PRELOAD sh -c 'echo lost >&3'; echo rc=$?; "
                              "env -u LD_PRELOAD cat <&3; echo rc=$?; "
                              "STRATA_POOL=/dev/shm/no-such-strata.pool sh -c 'echo lost >&3'; echo rc=$?"])
    assert out == "rc=1\nrc=1\nrc=1\n"
    assert "I/O error" in err and "Bad file descriptor" in err
    assert "inherited fd 3 is a Strata file, but the pool cannot be attached" in err
    assert strata_cli("cat", "/strata/loud.txt", pool=pool).stdout == ""


EXEC_PROG = """
import fcntl, os, subprocess, sys
print(os.lseek(3, 0, os.SEEK_CUR), bool(fcntl.fcntl(3, fcntl.F_GETFL) & os.O_APPEND))
os.write(3, b"!")
other = "import os\\ntry: os.open('/strata/l.txt', os.O_WRONLY)\\nexcept OSError as e: os._exit(e.errno)"
print(subprocess.run([sys.executable, "-c", other], env=dict(os.environ, STRATA_LEASE_WAIT_MS="50")).returncode)
"""


def test_exec_keeps_offset_flags_and_lease(pool, tmp_path):
    """exec in place (same pid): the new program adopts the fd with its
    offset, O_APPEND and the write lease, so another process's writable open
    of the file waits and fails with EBUSY while it runs."""
    prog = tmp_path / "prog.py"
    prog.write_text(EXEC_PROG)
    rc, out, err = run(pool, ["sh", "-c", f"printf abc > /strata/l.txt; exec 3>>/strata/l.txt; "
                                          f"exec {sys.executable} {prog}"])
    assert rc == 0, err
    assert out.splitlines() == ["0 True", str(errno.EBUSY)]
    assert strata_cli("cat", "/strata/l.txt", pool=pool).stdout == "abc!"
    fsck_clean(pool)


def test_a_program_that_clears_its_environment_keeps_its_pool(pool):
    # nginx's workers keep only TZ of their environment; before, libstrata
    # read STRATA_POOL and STRATA_MOUNT at the first file call, after the
    # clearing, and a worker opened the default pool and prefix instead of
    # its master's (kb_getenv: the values as the program started)
    code = ("import os\n"
            "os.environ.clear()\n"
            "with open('/strata/kept', 'w') as f:\n"
            "    f.write('same pool')\n")
    r = subprocess.run([sys.executable, "-c", code], env=shim_env(pool), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "strata:" not in r.stderr, r.stderr
    assert strata_cli("cat", "/strata/kept", pool=pool).stdout == "same pool"
    fsck_clean(pool)
