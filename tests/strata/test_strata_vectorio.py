"""Vector IO through the shim compared with tmpfs: readv, writev, preadv,
pwritev, preadv2/pwritev2 (offset -1, RWF_APPEND and other flags, errno
cases).  Before the shim defined pwritev/preadv they reached glibc with the
/dev/null placeholder fd, and the bytes were lost."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from strata_helpers import fsck_clean, shim_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectorio_worker.py")


def run(pool, d):
    r = subprocess.run([sys.executable, WORKER, d], env=shim_env(pool), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_vector_io_matches_tmpfs(pool):
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/vio')"], env=shim_env(pool),
                   check=True)
    tmpfs = tempfile.mkdtemp(dir="/dev/shm")
    try:
        ref = run(pool, tmpfs)  # not under /strata: the kernel's tmpfs
    finally:
        shutil.rmtree(tmpfs)
    got = run(pool, "/strata/vio")
    assert got == ref
    # the comparison covers real data and real errors
    assert ref["writev"] == 102408 and ref["final"][0] > 102408
    assert ref["pwritev_negative"] == "EINVAL" and ref["pwritev2_bad_flag"] == "ENOTSUP"  # = EOPNOTSUPP
    assert ref["writev_rdonly"] == "EBADF" and ref["readv_dir"] == "EISDIR"
    fsck_clean(pool)
