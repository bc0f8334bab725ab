"""The largest file, files past 4 GiB, and logs digest cannot apply.

A Strata file ends where its block map does (15 direct blocks, one
indirect, one double- and one triple-indirect: about 4 TiB; 4 GiB before
the triple-indirect block).  Writes past it used to be logged and
acknowledged (fsync too), then failed at digest: the entries stayed in the
dead writer's log, invisible to every other process, and `strata digest` and
fsck said nothing.  Now every call that would make a file larger fails first
with EFBIG (a write that crosses the end writes what fits), as on Linux past
a file system's largest file; and a log digest cannot apply is reported by
`strata digest` and fsck."""
import json
import os
import re
import subprocess
import sys

from strata_helpers import LIBSTRATA_TESTHOOKS, ROOT, fsck_clean, layout, shim_env, strata_cli

WORKER = r"""
import errno, json, os, sys
M = int(sys.argv[1])
out = {}
def call(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
fd = os.open("/strata/big", os.O_RDWR | os.O_CREAT, 0o644)
call("below", lambda: os.pwrite(fd, b"a" * 16, M - 4096))
call("across", lambda: os.pwrite(fd, b"b" * 16, M - 10))
call("at_end", lambda: os.pwrite(fd, b"c", M))
call("past", lambda: os.pwrite(fd, b"d", M + (1 << 30)))
call("empty_past", lambda: os.pwrite(fd, b"", M + 1))
call("truncate_past", lambda: os.ftruncate(fd, M + 1))
call("seek_past", lambda: os.lseek(fd, M + 1, os.SEEK_SET))
call("fallocate_past", lambda: os.posix_fallocate(fd, M - 1, 2))
call("seek_end", lambda: os.lseek(fd, 0, os.SEEK_END))
call("write_at_end", lambda: os.write(fd, b"e"))
g = os.open("/strata/v", os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(g, M - 3)
os.lseek(g, M - 3, os.SEEK_SET)
call("writev_across", lambda: os.writev(g, [b"xy", b"zw"]))
os.fsync(fd)
print(json.dumps(out))
"""


def largest_file():
    """From the constants of the layout header (the one definition)."""
    with open(os.path.join(ROOT, "include", "strata", "strata_layout.h")) as f:
        c = {k: int(v) for k, v in re.findall(r"#define (STRATA_\w+) (\d+)\b", f.read())}
    ptrs = c["STRATA_PTRS_PER_BLOCK"]
    return (c["STRATA_NDIRECT"] + ptrs + ptrs ** 2 + ptrs ** 3) * c["STRATA_BLOCK"]


def test_writes_past_the_largest_file_fail_and_lose_nothing(pool):
    m = largest_file()
    r = subprocess.run([sys.executable, "-c", WORKER, str(m)], env=shim_env(pool),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "below": 16, "across": 10, "at_end": "EFBIG", "past": "EFBIG", "empty_past": 0,
        "truncate_past": "EFBIG", "seek_past": "EINVAL", "fallocate_past": "EFBIG",
        "seek_end": m, "write_at_end": "EFBIG", "writev_across": 3}
    assert "digested" in strata_cli("digest", pool=pool).stdout
    # another process sees every byte acknowledged
    code = ("import os, json; fd = os.open('/strata/big', os.O_RDONLY); g = os.open('/strata/v', "
            "os.O_RDONLY); print(json.dumps([os.fstat(fd).st_size, os.pread(fd, 16, %d).decode(), "
            "os.pread(fd, 16, %d).decode(), os.pread(g, 8, %d).decode()]))" % (m - 4096, m - 10, m - 3))
    r = subprocess.run([sys.executable, "-c", code], env=shim_env(pool), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [m, "a" * 16, "b" * 10, "xyz"]
    fsck_clean(pool)


SPARSE = r"""
import json, os, sys
G = 1 << 30
fd = os.open("/strata/sparse", os.O_RDWR | os.O_CREAT, 0o644)
marks = {4 * G - 7: b"across-4G", 5 * G: b"five", 300 * G + 12345: b"three hundred"}
for off, data in marks.items():
    os.pwrite(fd, data, off)
os.fsync(fd)
print(json.dumps({str(k): v.decode() for k, v in marks.items()}))
"""

READ_BACK = r"""
import json, os, sys
marks = json.loads(sys.argv[1])
fd = os.open("/strata/sparse", os.O_RDWR)
out = {"size": os.fstat(fd).st_size,
       "marks": {k: os.pread(fd, len(v), int(k)).decode() for k, v in marks.items()},
       "hole": os.pread(fd, 8, (4 << 30) + 4096).hex()}
os.ftruncate(fd, (4 << 30) + 2)   # back under 5 GiB: the trees above are freed
out["after_truncate"] = os.pread(fd, 16, (4 << 30) - 7).decode()
print(json.dumps(out))
"""


def test_files_past_4_gib_are_stored_and_truncated(pool):
    """The double-indirect block ends at about 4 GiB; the triple-indirect one
    carries a file past it (a Redis AOF outgrew 4 GiB in a benchmark)."""
    r = subprocess.run([sys.executable, "-c", SPARSE], env=shim_env(pool), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    marks = json.loads(r.stdout)
    free_before = int(re.search(r"free_blocks\s+(\d+)", strata_cli("stat", pool=pool).stdout)[1])
    r = subprocess.run([sys.executable, "-c", READ_BACK, json.dumps(marks)], env=shim_env(pool),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"size": (300 << 30) + 12345 + 13, "marks": marks, "hole": "00" * 8,
                   "after_truncate": "across-4G"}, out
    strata_cli("digest", pool=pool)
    free_after = int(re.search(r"free_blocks\s+(\d+)", strata_cli("stat", pool=pool).stdout)[1])
    # the truncate freed the blocks of "five" and "three hundred" and their
    # tables (fsck below checks the bitmap and the free count are exact)
    assert free_after > free_before, (free_before, free_after)
    fsck_clean(pool)


def test_a_log_digest_cannot_apply_is_reported(pool, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"z" * 100_000)   # past the direct blocks: an indirect block
    strata_cli("cp", str(src), "/strata/f", pool=pool)
    ino = int(subprocess.run([sys.executable, "-c", "import os; print(os.stat('/strata/f').st_ino)"],
                             env=shim_env(pool), capture_output=True, text=True,
                             check=True).stdout)
    # a writer killed right after its write's log entry: its log stays
    r = subprocess.run([sys.executable, "-c", "import os; fd = os.open('/strata/f', os.O_WRONLY); "
                        "os.pwrite(fd, b'new', 90_000)"], capture_output=True, timeout=60,
                       env=shim_env(pool, LD_PRELOAD=LIBSTRATA_TESTHOOKS, STRATA_DIGEST_THREAD="0",
                                    STRATA_TEST_KILL_AFTER_APPENDS="1"))
    assert r.returncode == -9, r.stderr
    ffi = layout()
    with open(pool, "r+b") as f:   # and the block map that write lands in is corrupt
        sb = ffi.from_buffer("struct strata_super *", bytearray(f.read(4096)))
        f.seek(sb.off_inodes + ino * ffi.sizeof("struct strata_inode")
               + ffi.offsetof("struct strata_inode", "ind"))
        f.write((0xFFFFFF00).to_bytes(4, "little"))
    r = strata_cli("digest", pool=pool, check=False)
    assert r.returncode != 0 and "Structure needs cleaning" in r.stdout + r.stderr, r
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode == 1 and "could not be digested" in r.stdout, r.stdout
