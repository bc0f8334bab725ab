"""Vector IO and kernel-side copies through the shim compared with tmpfs:
readv, writev, preadv, pwritev, preadv2/pwritev2 (offset -1, RWF_APPEND and
other flags, errno cases), sendfile, copy_file_range and splice (Strata to
Strata, to and from kernel files and pipes).  Before the shim defined
pwritev/preadv they reached glibc with the /dev/null placeholder fd, and the
bytes were lost; the copies failed with EINVAL.  Also: the write path on an
open file description shared with a forked child and an exec'd program."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from strata_helpers import LIBSTRATA_TESTHOOKS, fsck_clean, shim_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectorio_worker.py")


def run(pool, d, other):
    r = subprocess.run([sys.executable, WORKER, d, other], env=shim_env(pool), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_vector_io_and_copies_match_tmpfs(pool):
    subprocess.run([sys.executable, "-c", "import os; os.mkdir('/strata/vio')"], env=shim_env(pool),
                   check=True)
    tmpfs, other = tempfile.mkdtemp(dir="/dev/shm"), tempfile.mkdtemp(dir="/dev/shm")
    try:
        ref = run(pool, tmpfs, other)  # not under /strata: the kernel's tmpfs
        got = run(pool, "/strata/vio", other)
    finally:
        shutil.rmtree(tmpfs)
        shutil.rmtree(other)
    assert got == ref
    # the comparison covers real data and real errors
    assert ref["writev"] == 102408 and ref["final"][0] > 102408
    assert ref["pwritev_negative"] == "EINVAL" and ref["pwritev2_bad_flag"] == "ENOTSUP"  # = EOPNOTSUPP
    assert ref["writev_rdonly"] == "EBADF" and ref["readv_dir"] == "EISDIR"
    assert ref["sendfile_pos"] == [100000, 100000, 100000] and ref["splice_from_pipe"][0] == 40000
    assert ref["sendfile_append"] == "EINVAL" and ref["splice_two_files"] == "EINVAL"
    # a forked child's and an exec'd program's writes move the shared position
    assert ref["pos_after_fork_child"] == 3 + 5 + 4 and ref["shared_head"] == "P1:c1-c2c3c4P2:e1e2"
    assert ref["exec_child"][:2] == [0, ["500", "600"]] and ref["pos_after_exec_child"] == [19 + 500, 600]
    fsck_clean(pool)


REC1 = b"r1:" + b"A" * 5000 + b"\n"
REC2 = b"r2:" + b"B" * 300000 + b"C" * 300000 + b"\n"
WRITER = """
import os
fd = os.open("/strata/a.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # log append 1
os.writev(fd, [b"r1:", b"A" * 5000, b"\\n"])                     # appends 2-4
os.writev(fd, [b"r2:", b"B" * 300000, b"C" * 300000, b"\\n"])    # 5-10 (pieces over a quarter log split)
"""


def test_writev_is_atomic_under_sigkill(pool):
    """SIGKILL right after each log append of two writevs (a test hook in the
    log append): recovery shows each writev whole or not at all.  Before
    transactions, a kill after append 2 left "r1:" alone in the file."""
    for n in range(1, 12):
        r = subprocess.run([sys.executable, "-c", WRITER], capture_output=True, timeout=60,
                           env=shim_env(pool, LD_PRELOAD=LIBSTRATA_TESTHOOKS,
                                        STRATA_TEST_KILL_AFTER_APPENDS=str(n)))
        assert r.returncode == (0 if n == 11 else -9), (n, r.stderr)
        got = subprocess.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write("
                              "open('/strata/a.log', 'rb').read()); import os; os.unlink('/strata/a.log')"],
                             env=shim_env(pool), capture_output=True, check=True).stdout
        assert got == (b"" if n < 4 else REC1 if n < 10 else REC1 + REC2), (n, got[:20], len(got))
    fsck_clean(pool)


def test_writev_larger_than_the_log(pool):
    """3 MiB in one writev with 1 MiB logs cannot be one transaction: it is
    logged in quarter-log transactions (digesting between them) and every
    byte arrives."""
    script = """
import hashlib, os
parts = [bytes([i]) * (300000 + i) for i in range(10)]
fd = os.open("/strata/big.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
n = os.writev(fd, parts)
back = os.pread(fd, 1 << 23, 0)
os.close(fd)
print(n, sum(map(len, parts)), back == b"".join(parts))
"""
    r = subprocess.run([sys.executable, "-c", script], env=shim_env(pool), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    n, total, same = r.stdout.split()
    assert n == total == str(sum(300000 + i for i in range(10))) and same == "True"
    fsck_clean(pool)
