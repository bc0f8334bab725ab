"""Descriptor semantics through the shim (dup family, fcntl, shared file
offsets, close) and fork: a child writes its own files but not through a
writable fd inherited from its parent, which holds the lease."""
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
        # the child reads the shared area, where the parent's writes are since
        # its close of cr.txt (a lease release) digested its log
        "child_status": 0, "child_write_inherited": "EBADF", "child_read_inherited": "hello",
        "child_file": "from child"}
    fsck_clean(pool)
