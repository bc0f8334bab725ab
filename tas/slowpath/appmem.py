"""Per-application shared segments and the payload-buffer allocator.

Architecture contract 1: payload buffers come from one allocator whose
backing is chosen by config.  `shm` backs a segment with a memfd (only the
app it is passed to can map it), sealed against shrinking and growing: an
app that could truncate it would make the daemon's next access to it a
SIGBUS.  `nvm` carves it out of a file in the NVM pool directory mapped the
same way, so RX buffers can live in NVM (files there cannot be sealed).
"""
import fcntl
import mmap
import os

PAGE = 4096


class MemfdBacking:
    name = "shm"

    def create(self, label, size):
        fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        except OSError:
            os.close(fd)
            raise
        return fd


class NvmFileBacking:
    """A file per segment next to the NVM pool (a DAX file system mounted
    there makes it real persistent memory)."""
    name = "nvm"

    def __init__(self, pool_path):
        self.dir = os.path.dirname(pool_path) or "."

    def create(self, label, size):
        path = os.path.join(self.dir, f"{label}.seg")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.ftruncate(fd, size)
        os.unlink(path)  # lives as long as the daemon and the app hold it
        return fd


def backing_for(cfg):
    if cfg.buffers.backing == "nvm":
        return NvmFileBacking(cfg.nvm.pool_path)
    return MemfdBacking()


class Allocator:
    """First-fit allocator of page-aligned ranges [start, end) with coalescing."""

    def __init__(self, start, end):
        self.free = [(start, end - start)]
        self.used = {}

    def alloc(self, size):
        size = -(-size // PAGE) * PAGE
        for i, (off, ln) in enumerate(self.free):
            if ln >= size:
                if ln == size:
                    del self.free[i]
                else:
                    self.free[i] = (off + size, ln - size)
                self.used[off] = size
                return off
        return None

    def release(self, off):
        size = self.used.pop(off)
        self.free.append((off, size))
        self.free.sort()
        merged = []
        for o, ln in self.free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + ln)
            else:
                merged.append((o, ln))
        self.free = merged


class Segment:
    """One app's segment, mapped in the daemon."""

    def __init__(self, backing, label, size, ffi):
        self.fd = backing.create(label, size)
        self.size = size
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ffi.from_buffer("uint8_t[]", self.map)
        self.ffi = ffi

    def ptr(self, off, ctype="uint8_t *"):
        return self.ffi.cast(ctype, self.base + off)

    def close(self):
        self.base = None
        try:
            self.map.close()
        except BufferError:
            pass  # a cffi view still references it; freed with the process
        os.close(self.fd)
