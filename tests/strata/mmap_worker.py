"""mmap and file locks through Python's mmap and fcntl modules; the tests run
it on /strata under the shim and on tmpfs without it and compare.

usage: mmap_worker.py coherence DIR      -- JSON of observations
       mmap_worker.py counters FILE      -- JSON: this process's mmap and lock counters
       mmap_worker.py peek FILE N        -- prints the first N bytes of a shared map
       mmap_worker.py sigbus FILE        -- touches a mapped page past EOF
       mmap_worker.py killwriter FILE    -- stores record i in page i % 64, msync, prints i
       mmap_worker.py hold FILE KIND     -- takes a lock (posix|ofd|flock|posix-close), prints its pid, waits on stdin
       mmap_worker.py probe FILE KIND    -- JSON: a non-blocking attempt and F_GETLK's answer
"""
import errno
import fcntl
import json
import mmap
import os
import struct
import subprocess
import sys

PAGES = 64
FLOCK = "hhqqi4x"  # struct flock on x86-64


def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def coherence(d):
    out = {}
    path = os.path.join(d, "m.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    pattern = bytes(i % 251 for i in range(10000))
    os.write(fd, pattern)
    m = mmap.mmap(fd, 10000)
    out["map_reads_file"] = m[:] == pattern
    os.pwrite(fd, b"W" * 100, 50)  # write() then a mapped read
    out["write_then_map"] = m[50:150].decode()
    m[5000:5100] = b"M" * 100  # a mapped store then read()
    out["store_then_read"] = os.pread(fd, 100, 5000).decode()
    out["store_then_read_other_fd"] = open(path, "rb").read()[5000:5010].decode()
    p = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE)
    p[0:10] = b"P" * 10  # never reaches the file
    out["private_store"] = (p[0:10].decode(), os.pread(fd, 10, 0) == pattern[:10], m[0:10] == pattern[:10])
    p.close()
    # another process maps the file and sees this one's stores before any msync
    m[0:4] = b"XPRC"
    r = subprocess.run([sys.executable, __file__, "peek", path, "4"], capture_output=True, text=True)
    out["other_process_sees_store"] = r.stdout.strip()
    # extend with ftruncate, then grow the mapping (mremap) and store there
    os.ftruncate(fd, 20000)
    m.resize(20000)
    m[15000:15010] = b"R" * 10
    m.flush()
    out["after_resize"] = (os.fstat(fd).st_size, os.pread(fd, 10, 15000).decode(), os.pread(fd, 10, 12000) == bytes(10))
    # a forked child stores through the inherited mapping, unmaps and exits:
    # the parent's mapping stays shared with other processes
    pid = os.fork()
    if pid == 0:
        m[100:104] = b"CHLD"
        m.close()
        os._exit(0)
    os.waitpid(pid, 0)
    m[0:4] = b"AFTR"
    r = subprocess.run([sys.executable, __file__, "peek", path, "4"], capture_output=True, text=True)
    out["after_fork_child"] = (m[100:104].decode(), os.pread(fd, 4, 100).decode(), r.stdout.strip())
    ro = os.open(path, os.O_RDONLY)
    out["ro_shared_write"] = err(lambda: mmap.mmap(ro, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE))
    m2 = mmap.mmap(ro, 4096, prot=mmap.PROT_READ)
    out["ro_map_sees"] = m2[0:4].decode()
    m2.close()
    os.close(ro)
    wo = os.open(path, os.O_WRONLY)
    out["wronly_map"] = err(lambda: mmap.mmap(wo, 4096))
    os.close(wo)
    out["unaligned_offset"] = err(lambda: mmap.mmap(fd, 100, offset=100))
    m.close()
    os.close(fd)
    data = open(path, "rb").read()
    out["final"] = (len(data), data[:4].decode(), data[50:52].decode(), data[5000:5002].decode(),
                    data[15000:15002].decode(), data[20:30] == pattern[20:30])
    print(json.dumps(out, sort_keys=True))


def counters(path):
    """This process's Strata counters after one shared and one private map,
    a store to page 1 and msync, and a lock taken and released."""
    from bindings import stats
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 3 * 4096)
    m = mmap.mmap(fd, 3 * 4096)
    p = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE)
    m[4096 + 7] = 1
    m.flush()
    fcntl.lockf(fd, fcntl.LOCK_EX)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    c = stats.read("strata", str(os.getpid()))
    print(json.dumps({k: c[k] for k in ("maps", "writebacks", "writeback_bytes", "shadow_files", "locks",
                                        "lock_files")}))
    p.close()
    m.close()


def peek(path, n):
    fd = os.open(path, os.O_RDONLY)
    m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)
    print(m[:n].decode())


def sigbus(path):
    """Python's mmap refuses a length past EOF, so libc's mmap directly."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"x" * 100)
    addr = libc.mmap(None, 8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    print(ctypes.string_at(addr, 1).decode(), ctypes.string_at(addr + 4095, 1) == b"\0", flush=True)
    ctypes.string_at(addr + 5000, 1)  # past EOF: SIGBUS


def killwriter(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, PAGES * 4096)
    m = mmap.mmap(fd, PAGES * 4096)
    i = 0
    while True:
        page = i % PAGES
        m[page * 4096:page * 4096 + 4096] = struct.pack("<Q", i) * 512
        m.flush()
        print(i, flush=True)
        i += 1


def lock(fd, kind, nonblock):
    if kind == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if nonblock else 0))
    elif kind == "posix":
        fcntl.lockf(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if nonblock else 0), 100, 10)
    else:
        fl = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 10, 100, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK if nonblock else fcntl.F_OFD_SETLKW, fl)


def hold(path, kind):
    """posix-close: POSIX locks go with the close of any fd of the file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    lock(fd, kind.split("-")[0], False)
    if kind == "posix-close":
        os.close(os.open(path, os.O_RDONLY))
    print(os.getpid(), flush=True)
    sys.stdin.readline()


def probe(path, kind):
    kind = kind.split("-")[0]
    fd = os.open(path, os.O_RDWR)
    out = {"try": err(lambda: lock(fd, kind, True))}
    if kind != "flock":
        cmd = fcntl.F_GETLK if kind == "posix" else fcntl.F_OFD_GETLK
        t, w, start, ln, pid = struct.unpack(FLOCK, fcntl.fcntl(fd, cmd, struct.pack(FLOCK, fcntl.F_WRLCK, 0, 0, 0, 0)))
        out["getlk"] = {"type": t, "start": start, "len": ln, "pid": pid}
    # a read lock on a write-only description is EBADF
    wo = os.open(path, os.O_WRONLY)
    out["rdlck_on_wronly"] = err(lambda: fcntl.fcntl(wo, fcntl.F_SETLK, struct.pack(FLOCK, fcntl.F_RDLCK, 0, 0, 1, 0)))
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "coherence":
        coherence(sys.argv[2])
    elif mode == "counters":
        counters(sys.argv[2])
    elif mode == "peek":
        peek(sys.argv[2], int(sys.argv[3]))
    elif mode == "sigbus":
        sigbus(sys.argv[2])
    elif mode == "killwriter":
        killwriter(sys.argv[2])
    elif mode == "hold":
        hold(sys.argv[2], sys.argv[3])
    else:
        probe(sys.argv[2], sys.argv[3])
