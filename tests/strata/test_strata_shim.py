"""Descriptor semantics through the shim (dup family, fcntl, shared file
offsets, close) and fork: parent and child share an open file description
(offset, flags) and both may write through it."""
import json
import os
import subprocess
import sys

from strata_helpers import fsck_clean, shim_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim_worker.py")


def test_fd_semantics_and_fork(pool):
    r = subprocess.run([sys.executable, WORKER], env=shim_env(pool), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {
        "fd_is_small_int": True, "shared_offset": "hello world", "f_dupfd_min": True,
        "after_close": "hello", "append_flag": True, "cloexec": True, "double_close": "EBADF",
        "after_fd_sweep": True, "closerange_reuse": [True, True],
        # the parent digests before fork; the child writes through the open
        # file description it shares with the parent (O_APPEND is set on it),
        # and its write is digested at once since the parent holds the lease
        "child_status": 0, "child_write_inherited": "ok", "child_read_inherited": "hello",
        "child_file": "from child", "parent_sees_child_write": "hello worldx",
        "offset_after_child": 12}
    fsck_clean(pool)
