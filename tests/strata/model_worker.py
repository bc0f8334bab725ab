"""Runs under the shim (LD_PRELOAD=libstrata.so): a seeded random workload of
file operations applied to a Strata root and to a reference root on tmpfs,
through the ordinary os.* calls.  Every call's outcome (value or errno) must
match; at the end both trees (types, sizes, contents, listings) must match.
Prints a JSON summary; the test asserts on it.

usage: model_worker.py SEED NOPS STRATA_ROOT REF_ROOT
"""
import errno
import json
import os
import random
import stat
import sys

DIRS = ["", "d0", "d1", "d0/e"]
NAMES = ["f0", "f1", "f2", "f3"]


def outcome(fn, *args):
    try:
        r = fn(*args)
        return ("ok", r)
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


class Side:
    """One root and its open fds (keyed by the model's fd slot)."""

    def __init__(self, root):
        self.root, self.fds = root, {}

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root


def stat_summary(path):
    """Type, permission bits, and size (directory sizes are fs-specific)."""
    st = os.stat(path)
    return (oct(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else None)


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel] = ("dir", sorted(dirs), sorted(files))
        for f in files:
            full = os.path.join(dirpath, f)
            with open(full, "rb") as fh:
                data = fh.read()
            out[os.path.join(rel, f)] = ("file", stat_summary(full), len(data), data.hex())
    return out


def main():
    seed, nops, sroot, rroot = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = random.Random(seed)
    sides = [Side(sroot), Side(rroot)]
    from strata import api  # binds the preloaded libstrata (same soname: loaded once)
    digest = api.lib().strata_digest
    mismatches, ok_ops, kinds = [], 0, {}

    def path():
        d = rng.choice(DIRS)
        return os.path.join(d, rng.choice(NAMES)) if rng.random() < 0.8 else d

    for step in range(nops):
        kind = rng.choice(["open", "open", "write", "write", "pwrite", "read", "pread",
                           "truncate", "close", "unlink", "rename", "mkdir", "rmdir",
                           "stat", "fsync", "listdir", "lseek", "digest", "dup", "chmod"])
        p1, p2 = path(), path()
        slot = rng.randrange(4)
        data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 100, 4096, 5000])))
        off = rng.choice([0, 1, 100, 4095, 4096, 9000])
        flags = rng.choice([os.O_RDWR | os.O_CREAT, os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                            os.O_RDWR | os.O_CREAT | os.O_TRUNC, os.O_RDWR | os.O_CREAT | os.O_EXCL])
        whence, rlen = rng.choice([0, 1, 2]), rng.choice([1, 100, 5000, 20000])
        perm = rng.choice([0o600, 0o644, 0o755, 0o700])
        res = []
        for s in sides:
            fd = s.fds.get(slot)
            if kind == "open":
                if fd is not None:
                    os.close(fd)
                    s.fds.pop(slot)
                r = outcome(os.open, s.p(p1), flags, 0o644)
                if r[0] == "ok":
                    s.fds[slot] = r[1]
                    r = ("ok", "fd")
            elif kind == "digest":
                r = ("ok", digest() >= 0 if s is sides[0] else True)
            elif kind in ("write", "pwrite", "read", "pread", "truncate", "close", "fsync",
                          "lseek", "dup") and fd is None:
                r = ("nofd",)
            elif kind == "write":
                r = outcome(os.write, fd, data)
            elif kind == "pwrite":
                r = outcome(os.pwrite, fd, data, off)
            elif kind == "read":
                r = outcome(os.read, fd, rlen)
            elif kind == "pread":
                r = outcome(os.pread, fd, 6000, off)
            elif kind == "truncate":
                r = outcome(os.ftruncate, fd, off)
            elif kind == "close":
                r = outcome(os.close, fd)
                s.fds.pop(slot)
            elif kind == "fsync":
                r = outcome(os.fsync, fd)
            elif kind == "lseek":
                r = outcome(os.lseek, fd, off, whence)
            elif kind == "dup":
                r = outcome(os.dup, fd)
                if r[0] == "ok":
                    os.close(fd)
                    s.fds[slot] = r[1]
                    r = ("ok", "fd")
            elif kind == "unlink":
                r = outcome(os.unlink, s.p(p1))
            elif kind == "rename":
                r = outcome(os.rename, s.p(p1), s.p(p2))
            elif kind == "mkdir":
                r = outcome(os.mkdir, s.p(p1), 0o755)
            elif kind == "chmod":
                r = outcome(os.chmod, s.p(p1), perm)
            elif kind == "rmdir":
                r = outcome(os.rmdir, s.p(p1))
            elif kind == "stat":
                r = outcome(stat_summary, s.p(p1))
            elif kind == "listdir":
                r = outcome(lambda q: sorted(os.listdir(q)), s.p(p1))
            res.append(r)
        if res[0] != res[1]:
            mismatches.append({"step": step, "op": kind, "p1": p1, "p2": p2, "off": off,
                               "flags": flags, "strata": repr(res[0]), "ref": repr(res[1])})
            break
        if os.environ.get("MODEL_TRACE"):
            ts, tr = tree(sroot), tree(rroot)
            if ts != tr:
                print("DIVERGED", step, kind, p1, p2, off, flags, len(data), res, file=sys.stderr)
                break
        ok_ops += res[0][0] == "ok"
        kinds[kind] = kinds.get(kind, 0) + (res[0][0] == "ok")
    for s in sides:
        for fd in s.fds.values():
            os.close(fd)
    ts, tr = tree(sroot), tree(rroot)
    tree_diff = sorted(k for k in set(ts) | set(tr) if ts.get(k) != tr.get(k))
    print(json.dumps({"mismatches": mismatches, "ok_ops": ok_ops, "kinds": kinds,
                      "tree_diff": tree_diff[:10], "entries": len(ts)}))


if __name__ == "__main__":
    main()
