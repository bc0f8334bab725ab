"""C API scenarios run in a child process (strata/api.py, cffi on libstrata), so each
step is a separate process like a real application.

usage: api_worker.py POOL STEP [ARGS]   (prints one JSON object)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from strata import api  # noqa: E402

L = None
ffi = None


def ref_area():
    addr, off, length = ffi.new("void **"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
    api.check(L.strata_ref_area(addr, off, length), "ref")
    return ffi.cast("char *", addr[0]), off[0], length[0]


def open_w(path, flags=os.O_WRONLY | os.O_CREAT):
    return L.strata_open(path.encode(), flags, 0o644)


def step_ref(args):
    """write 'head', then a 4 KiB reference into the ref area, then 'tail'."""
    addr, off, _ = ref_area()
    addr, off = addr + 4096, off + 4096  # page 0 of the ref area is the TAS ownership table
    payload = bytes((i * 7) & 0xFF for i in range(4096))
    ffi.memmove(addr, payload, len(payload))
    fd = api.check(open_w("/ref.bin"), "open")
    out = {"head": L.strata_write(fd, b"head", 4),
           "ref": L.strata_write_ref(fd, off, 4096)}
    out["tail"] = L.strata_write(fd, b"tail", 4)
    out["bad_ref"] = L.strata_write_ref(fd, off - 8192, 4096)  # outside the ref area
    out["bad_errno"] = ffi.errno
    out["table_ref"] = L.strata_write_ref(fd, off - 4096, 4096)  # into the ownership table
    out["table_errno"] = ffi.errno
    out["neg_ref"] = L.strata_pwrite_ref(fd, off, 4096, -4096)  # the checks of pwrite apply
    out["neg_errno"] = ffi.errno
    out["own_view"] = api.read_file("/ref.bin") == b"head" + payload + b"tail"
    out["ref_off"] = off
    if args and args[0] == "crash":
        print(json.dumps(out), flush=True)
        os._exit(0)  # no close, no detach: the log stays undigested
    L.strata_close(fd)
    return out


def step_read(args):
    data = api.read_file(args[0])
    return {"len": len(data), "hex": data.hex()}


def step_hold(args):
    """Open a file for writing and wait (holding the lease) until stdin closes."""
    fd = open_w(args[0])
    print(json.dumps({"fd": fd}), flush=True)
    sys.stdin.read()
    L.strata_close(fd)
    return {"closed": True}


def step_open_w(args):
    os.environ["STRATA_LEASE_WAIT_MS"] = args[1]
    fd = open_w(args[0])
    return {"fd": fd, "errno": ffi.errno if fd < 0 else 0}


def step_fill(args):
    """Write 1 MiB chunks to new files until a write fails."""
    chunk = b"x" * (1 << 20)
    written, err, files = 0, 0, 0
    while err == 0 and files < 1000:
        fd = api.check(open_w(f"/fill{files}"), "open")
        files += 1
        for _ in range(4):
            n = L.strata_write(fd, chunk, len(chunk))
            if n < 0:
                err = ffi.errno
                break
            written += n
        L.strata_close(fd)
    return {"written": written, "errno": err, "files": files}


def step_hole_fill(args):
    """Make a file with a 200 MiB hole, then write into the hole until a write
    fails; the failure must come at write time, and digest must then succeed."""
    fd = api.check(open_w("/holey", os.O_RDWR | os.O_CREAT), "open")
    api.check(L.strata_ftruncate(fd, 200 << 20), "ftruncate")
    chunk = b"h" * (1 << 20)
    written, err = 0, 0
    while err == 0 and written < (200 << 20):
        if L.strata_pwrite(fd, chunk, len(chunk), written) < 0:
            err = ffi.errno
        else:
            written += len(chunk)
    digested = L.strata_digest()
    L.strata_close(fd)
    return {"written": written, "errno": err, "digest": digested}


def step_unlink_fill(args):
    n = 0
    while L.strata_unlink(f"/fill{n}".encode()) == 0:
        n += 1
    fd = api.check(open_w("/after"), "open")
    ok = L.strata_write(fd, b"y" * 4096, 4096)
    L.strata_close(fd)
    return {"unlinked": n, "write_after": ok}


def step_overwrite(args):
    """Overwrite one block many times, digest, report this process's counters."""
    from bindings import stats
    fd = api.check(open_w("/hot", os.O_RDWR | os.O_CREAT), "open")
    for i in range(100):
        block = bytes([i]) * 4096
        L.strata_pwrite(fd, block, 4096, 8192)
    L.strata_fsync(fd)
    L.strata_digest()
    L.strata_close(fd)
    return stats.read("strata", str(os.getpid()))


def step_write_wait(args):
    """Write, wait for a line on stdin, write again (a pending digest request is
    served here), report counters, then hold the file open until stdin closes."""
    from bindings import stats
    fd = api.check(open_w("/req"), "open")
    L.strata_write(fd, b"a", 1)
    print(json.dumps({"first": True}), flush=True)
    sys.stdin.readline()
    L.strata_write(fd, b"b", 1)
    print(json.dumps(stats.read("strata", str(os.getpid()))), flush=True)
    sys.stdin.read()
    L.strata_close(fd)
    return {"closed": True}


def main():
    global L, ffi
    pool, step, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    L, ffi = api.lib(), api.ffi()
    api.attach(pool)
    print(json.dumps(globals()["step_" + step](args)), flush=True)


if __name__ == "__main__":
    main()
