"""Space workloads on directory argv[2] (mode argv[1]); prints JSON.

fill:    append 64 KiB until a write fails; check what was written is intact,
         then unlink and write again (ENOSPC must come back as ENOSPC and
         lose nothing committed).
append:  append argv[3] MiB in 64 KiB writes of deterministic data to one file;
         on Strata, the pool pages digest stored to were mapped ahead
         (pages_populated) rather than faulted in one by one.
rewrite: AOF-like: append; when the file passes argv[4] MiB, write a compact
         1 MiB copy and rename it over (BGREWRITEAOF); until argv[3] MiB were
         appended in all.
"""
import errno
import hashlib
import json
import os
import sys

mode, d = sys.argv[1], sys.argv[2]
CHUNK = 64 << 10


def block(i):
    return hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)


out = {}
if mode == "fill":
    fd = os.open(f"{d}/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    try:
        while True:
            w = os.write(fd, block(n))
            if w != CHUNK:  # a short write, then the next one fails
                out["short"] = True
                os.ftruncate(fd, n * CHUNK)
                continue
            n += 1
    except OSError as e:
        out["error"] = errno.errorcode[e.errno]
    os.fsync(fd)
    os.close(fd)
    out["chunks_positive"] = n > 0
    with open(f"{d}/fill", "rb") as f:
        out["intact"] = all(f.read(CHUNK) == block(i) for i in range(n)) and f.read() == b""
    os.unlink(f"{d}/fill")
    with open(f"{d}/again", "wb") as f:
        f.write(block(0) * 16)
    with open(f"{d}/again", "rb") as f:
        out["after_unlink"] = f.read() == block(0) * 16
    os.unlink(f"{d}/again")
elif mode == "append":
    total = int(sys.argv[3]) << 20
    h = hashlib.sha256()
    fd = os.open(f"{d}/aof", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for i in range(total // CHUNK):
        b = block(i)
        assert os.write(fd, b) == CHUNK
        h.update(b)
        if i % 64 == 0:
            os.fsync(fd)
    os.close(fd)
    out = {"size": os.stat(f"{d}/aof").st_size, "sha256": h.hexdigest(), "mapped_ahead": True}
    if d == "/strata":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from bindings import stats
        digested = stats.read("strata", str(os.getpid()))
        out["mapped_ahead"] = digested["pages_populated"] * 4096 >= digested["digested_bytes"] > 0
        if os.environ.get("REPORT_PMD"):
            from strata.cli import pmd_mapped_bytes
            out["pool_pmd_mapped_kb"] = pmd_mapped_bytes(os.environ["STRATA_POOL"]) >> 10
elif mode == "rewrite":
    total, limit = int(sys.argv[3]) << 20, int(sys.argv[4]) << 20
    fd = os.open(f"{d}/aof", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    appended = rewrites = i = 0
    while appended < total:
        os.write(fd, block(i))
        appended += CHUNK
        i += 1
        if os.fstat(fd).st_size >= limit:
            with open(f"{d}/aof.tmp", "wb") as t:
                t.write(block(-i) * 16)
                t.flush()
                os.fsync(t.fileno())
            os.rename(f"{d}/aof.tmp", f"{d}/aof")
            os.close(fd)
            fd = os.open(f"{d}/aof", os.O_WRONLY | os.O_APPEND)
            rewrites += 1
    os.close(fd)
    with open(f"{d}/aof", "rb") as f:
        data = f.read()
    out = {"appended_mib": appended >> 20, "rewrites": rewrites, "size": len(data),
           "sha256": hashlib.sha256(data).hexdigest()}
print(json.dumps(out, sort_keys=True))
