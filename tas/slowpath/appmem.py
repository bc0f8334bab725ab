"""Per-application shared segments and the payload-buffer allocator.

Architecture contract 1: payload buffers come from one allocator whose
backing is chosen by config.  `shm` backs a segment with a memfd (only the
app it is passed to can map it), sealed against shrinking and growing: an
app that could truncate it would make the daemon's next access to it a
SIGBUS.  `nvm` makes it a slice of the Strata pool's reference area
(tas/slowpath/arena.py), so RX rings live in NVM where Strata log entries can
reference them (the pool cannot be sealed; the arena keeps its size).
"""
import fcntl
import mmap
import os

PAGE = 4096
SEG_CLEAR = PAGE   # the header page (appctx clears each context descriptor)


class MemfdBacking:
    """One sealed memfd per app: only the app it is passed to can map it."""
    name = "shm"

    def __init__(self, instance):
        self.instance = instance

    def segment(self, app, size, ffi):
        fd = os.memfd_create(f"tas-{self.instance}-app{app.id}",
                             os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        except OSError:
            os.close(fd)
            raise
        return MemfdSegment(fd, size, ffi)

    def retire(self, segment):
        segment.close()

    def close(self):
        pass


class ArenaBacking:
    """Slices of a Strata pool's ref area (tas/slowpath/arena.py)."""
    name = "nvm"
    flags_nvm = True

    def __init__(self, arena):
        self.arena = arena

    def segment(self, app, size, ffi):
        off = self.arena.take(size, app.pid, app.uid, app.start, app.id)
        if off is None:
            return None
        return ArenaSegment(self.arena, off, size, ffi)

    def retire(self, segment):
        """The app is gone: its slice is quarantined, not freed."""
        self.arena.retire(segment.seg_off)

    def close(self):
        self.arena.close()


def backing_for(cfg, ffi, lib, stats=None):
    if cfg.buffers.backing == "nvm":
        from tas.slowpath.arena import StrataArena
        return ArenaBacking(StrataArena(cfg, ffi, lib, stats))
    return MemfdBacking(cfg.tas.instance)


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

    def free_bytes(self):
        return sum(ln for _, ln in self.free)

    def reserve(self, off, size):
        """Take exactly [off, off+size) (a slice found in the ownership table);
        False if any of it is not free."""
        for i, (o, ln) in enumerate(self.free):
            if o <= off and off + size <= o + ln:
                pieces = [(o, off - o), (off + size, o + ln - off - size)]
                self.free[i:i + 1] = [p for p in pieces if p[1] > 0]
                self.used[off] = size
                return True
        return False

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


class MemfdSegment:
    """One app's segment in its own memfd, mapped in the daemon."""
    seg_off = 0
    nvm = False

    def __init__(self, fd, size, ffi):
        self.fd, self.size, self.ffi = fd, size, ffi
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ffi.from_buffer("uint8_t[]", self.map)

    def ptr(self, off, ctype="uint8_t *"):
        return self.ffi.cast(ctype, self.base + off)

    def close(self):
        self.base = None
        try:
            self.map.close()
        except BufferError:
            pass  # a cffi view still references it; freed with the process
        os.close(self.fd)


class ArenaSegment:
    """One app's slice of the arena: the daemon's view into its arena map;
    the app maps the pool fd at seg_off."""
    nvm = True

    def __init__(self, arena, seg_off, size, ffi):
        self.fd, self.seg_off, self.size, self.ffi = arena.fd, seg_off, size, ffi
        self.base = arena.view(seg_off, size)
        # A slice may hold a previous owner's bytes: clear the header; rings
        # are initialised by the daemon and payload needs no clearing.
        ffi.memmove(self.base, b"\0" * SEG_CLEAR, SEG_CLEAR)

    def ptr(self, off, ctype="uint8_t *"):
        return self.ffi.cast(ctype, self.base + off)
