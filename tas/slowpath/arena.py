"""The NVM payload arena: app segments carved from a Strata pool's ref area.

With buffers.backing = "nvm", nvm.pool_path is a Strata pool (`strata mkfs`)
and its reference area is the arena.  Page 0 is the persistent ownership
table (include/tas/arena.h); every app's segment is one slice after it.  A
row is persisted before the app hears of its slice, and a slice goes back to
the allocator only when no Strata log can still reference its bytes:

- no Strata log slot is owned by its owner process (pid + start time) or by
  any dead process (the dead ones are recovered by running `strata digest`,
  which replays and resets their logs; a slot whose digest fails stays
  owned, so the slice stays quarantined), and
- no process but the daemon maps the slice (/proc/*/maps): not the owner
  (an app of a previous daemon, or one that has not unmapped yet), nor a
  child it forked with the mapping.

A daemon restart reconciles the table instead of reformatting it: every row
is quarantined and freed only by the rule above, so a slice whose owner
still runs stays reserved until that process unmaps it or exits.
"""
import fcntl
import mmap
import os
import subprocess
import sys
import threading
import time

PAGE = 4096
FULL_SAY_S = 10.0          # at most one "arena full" message per this long
RECLAIM_INTERVAL_S = 1.0   # re-check of quarantined slices (app exit and digest end re-check at once)
DIGEST_RETRY_S = 2.0      # a digest that leaves dead slots owned (ENOSPC) is retried this often


COUNTERS = ("arena_slices_taken", "arena_quarantines", "arena_slices_freed", "arena_bytes_freed",
            "arena_digests", "arena_digest_failures", "arena_full", "arena_rows_reconciled",
            "arena_table_flushes", "arena_maps_scans")


class PoolError(RuntimeError):
    """The configured pool cannot back the arena; the message names the key."""


def proc_start(pid):
    """Start time of pid (/proc/pid/stat field 22, clock ticks), 0 if gone.
    The same clock Strata records for its slot owners."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return 0                # a zombie has released its mappings: gone (as Strata says)
    return int(fields[19])      # field 22 counts from 1 with pid and comm first


def owner_alive(pid, start):
    return pid > 0 and proc_start(pid) == start


class StrataArena:
    name = "nvm"

    def __init__(self, cfg, ffi, lib, stats=None):
        self.ffi, self.lib, self.stats = ffi, lib, stats
        self.path = cfg.nvm.pool_path
        self.pool_key = f"nvm.pool_path = {self.path!r}"
        self._open(cfg.buffers.app_segment)
        try:
            # One daemon per pool: a POSIX record lock on the table's first
            # byte (Strata's own lock is flock on the whole file; they do not meet).
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.ref_off)
        except OSError:
            os.close(self.fd)
            raise PoolError(f"{self.pool_key}: another TAS daemon serves this pool") from None
        try:
            self.map = mmap.mmap(self.fd, self.ref_bytes, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE, offset=self.ref_off)
        except OSError:
            os.close(self.fd)
            raise
        self.base = ffi.from_buffer("uint8_t[]", self.map)
        self.table = ffi.cast("struct tas_arena_table *", self.base)
        from tas.slowpath.appmem import Allocator
        self.alloc = Allocator(PAGE, self.ref_bytes)
        self.rows = {}           # slice pool offset -> row index
        self.attached = set()    # row indexes owned by apps attached to this daemon
        self.scan = None         # (start, thread, result) of the /proc/*/maps scan
        self.since = {}          # row -> when it was quarantined (monotonic)
        self.full_said = -FULL_SAY_S
        self.digest = None       # running `strata digest` process
        self.last_digest = -DIGEST_RETRY_S
        self.digest_progress = True   # a new quarantine may digest at once
        self.next_reclaim = 0.0
        for name in COUNTERS:    # shown from the start, zero or not
            self._count(name, 0)
        self._load_table()

    # ---- the pool -----------------------------------------------------------

    def _open(self, segment_size):
        """Open the pool and read its geometry; PoolError naming the key."""
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise PoolError(f"{self.pool_key}: {e.strerror}: buffers.backing = \"nvm\" needs a "
                            f"Strata pool (make one with `strata --pool {self.path} mkfs`)"
                            ) from None
        try:
            self._read_super()
            if self.ref_bytes < PAGE + segment_size:
                raise PoolError(f"{self.pool_key}: its Strata ref area holds {self.ref_bytes} "
                                f"bytes, less than the 4 KiB ownership table plus one "
                                f"buffers.app_segment ({segment_size}): make the pool with a "
                                f"larger ref area or lower buffers.app_segment")
        except BaseException:
            os.close(self.fd)
            raise

    @classmethod
    def check(cls, cfg, ffi, lib):
        """Daemon start-up, before anything else is touched: is the pool usable?"""
        probe = cls.__new__(cls)
        probe.ffi, probe.lib, probe.path = ffi, lib, cfg.nvm.pool_path
        probe.pool_key = f"nvm.pool_path = {probe.path!r}"
        probe._open(cfg.buffers.app_segment)
        os.close(probe.fd)

    def _read_super(self):
        ffi, lib = self.ffi, self.lib
        raw = os.pread(self.fd, PAGE, 0)
        sb = ffi.from_buffer("struct strata_super *", raw) if len(raw) == PAGE else None
        if sb is None or sb.magic != lib.STRATA_MAGIC:
            raise PoolError(f"{self.pool_key}: not a Strata pool (no Strata superblock; "
                            f"make one with `strata --pool {self.path} mkfs`)")
        if sb.version != lib.STRATA_VERSION:
            raise PoolError(f"{self.pool_key}: Strata layout version {sb.version}, this "
                            f"daemon reads {lib.STRATA_VERSION}")
        if sb.off_ref % PAGE or sb.ref_bytes % PAGE or \
                sb.off_ref + sb.ref_bytes > os.fstat(self.fd).st_size:
            raise PoolError(f"{self.pool_key}: Strata ref area {sb.off_ref}+{sb.ref_bytes} "
                            f"lies outside the file or is not page-aligned")
        self.ref_off, self.ref_bytes = sb.off_ref, sb.ref_bytes
        st = os.fstat(self.fd)
        self.ino, self.dev = st.st_ino, f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
        self.slots_off, self.nslots = sb.off_slots, sb.nslots

    def slots(self):
        """[(owner pid, owner start)] of every owned Strata log slot."""
        ffi = self.ffi
        n = ffi.sizeof("struct strata_slot")
        raw = os.pread(self.fd, n * self.nslots, self.slots_off)
        arr = ffi.from_buffer("struct strata_slot[]", raw)
        return [(arr[i].owner_pid, arr[i].owner_start) for i in range(self.nslots)
                if arr[i].owner_pid != 0]

    # ---- the table ----------------------------------------------------------

    def _persist(self):
        """Flush the table page (msync; on a DAX mount this reaches the media)."""
        self.map.flush(0, PAGE)
        self._count("arena_table_flushes")

    def _load_table(self):
        t, lib = self.table, self.lib
        if t.magic == 0:
            if any(self.map[:PAGE]):
                raise PoolError(f"{self.pool_key}: page 0 of the Strata ref area holds data "
                                f"that is not a TAS ownership table")
            t.version, t.nrows = lib.TAS_ARENA_VERSION, lib.TAS_ARENA_ROWS
            t.arena_off, t.arena_bytes = self.ref_off, self.ref_bytes
            self._persist()
            t.magic = lib.TAS_ARENA_MAGIC
            self._persist()
            return
        if t.magic != lib.TAS_ARENA_MAGIC or t.version != lib.TAS_ARENA_VERSION:
            raise PoolError(f"{self.pool_key}: the ref area's ownership table is not version "
                            f"{lib.TAS_ARENA_VERSION} (magic {t.magic:#x}, version {t.version})")
        if t.arena_off != self.ref_off or t.arena_bytes != self.ref_bytes:
            raise PoolError(f"{self.pool_key}: the ownership table was made for a ref area at "
                            f"{t.arena_off}+{t.arena_bytes}, the pool has {self.ref_off}+"
                            f"{self.ref_bytes}")
        # Reconcile: every slice of a previous daemon stays reserved and is
        # quarantined; reclaim() frees it once its owner is gone and recovered.
        changed = False
        for i in range(lib.TAS_ARENA_ROWS):
            r = t.row[i]
            if r.state == lib.TAS_ARENA_FREE:
                continue
            rel = r.off - self.ref_off
            if rel < PAGE or r.len == 0 or rel + r.len > self.ref_bytes or \
                    not self.alloc.reserve(rel, r.len):
                raise PoolError(f"{self.pool_key}: ownership table row {i} names slice "
                                f"{r.off}+{r.len}, outside the ref area or overlapping another")
            self.rows[r.off] = i
            self.since[i] = time.monotonic()
            if r.state != lib.TAS_ARENA_QUARANTINED:
                r.state = lib.TAS_ARENA_QUARANTINED
                changed = True
            self._count("arena_rows_reconciled")
        if changed:
            self._persist()
        self._publish()

    # ---- slices -------------------------------------------------------------

    def take(self, size, pid, uid, start, app_id):
        """Reserve and persist a slice for an app; its pool offset, or None."""
        lib, t = self.lib, self.table
        free_rows = [i for i in range(lib.TAS_ARENA_ROWS) if t.row[i].state == lib.TAS_ARENA_FREE]
        rel = self.alloc.alloc(size) if free_rows else None
        if rel is None:
            # Full: slices freed by the background scan may be waiting; look
            # now (tens of ms on the slow path, only under pressure).
            self.reclaim(sync=True)
            free_rows = [i for i in range(lib.TAS_ARENA_ROWS)
                         if t.row[i].state == lib.TAS_ARENA_FREE]
            rel = self.alloc.alloc(size) if free_rows else None
        if rel is None:
            self._count("arena_full")
            self._say_full(size, pid, uid)
            return None
        i = free_rows[0]
        r = t.row[i]
        r.pid, r.uid, r.start, r.app_id = pid, uid, start, app_id
        r.off, r.len = self.ref_off + rel, -(-size // PAGE) * PAGE
        self._persist()
        r.state = lib.TAS_ARENA_LIVE
        self._persist()
        self.rows[r.off] = i
        self.attached.add(i)
        self._count("arena_slices_taken")
        self._publish()
        return r.off

    def view(self, off, size):
        """The daemon's mapping of a slice: a cffi pointer to its first byte."""
        return self.base + (off - self.ref_off)

    def retire(self, off):
        """The slice's app is gone: quarantine it until reclaim() frees it."""
        i = self.rows[off]
        r = self.table.row[i]
        self.attached.discard(i)
        self.since[i] = time.monotonic()
        r.state = self.lib.TAS_ARENA_QUARANTINED
        self._persist()
        self._count("arena_quarantines")
        self._publish()
        self.next_reclaim = 0.0
        self.digest_progress = True
        self.reclaim()

    def _free(self, i):
        r = self.table.row[i]
        off, ln = r.off, r.len
        r.state = self.lib.TAS_ARENA_FREE
        self._persist()
        r.pid = r.uid = r.app_id = 0
        r.start = r.off = r.len = 0
        self._persist()
        del self.rows[off]
        del self.since[i]
        self.alloc.release(off - self.ref_off)
        self._count("arena_slices_freed")
        self._count("arena_bytes_freed", ln)

    def _pool_mappings(self, pids):
        """[(pid, file offset, length)] of the pool's mappings in pids that
        start past file offset 0: slice mappings (libtas maps its slice at
        its own offset; libstrata maps the whole pool from offset 0)."""
        out = []
        ino = f" {self.ino} "
        for pid in pids:
            try:
                with open(f"/proc/{pid}/maps") as f:
                    text = f.read()
            except OSError:
                continue          # gone, or a kernel thread
            if ino not in text:
                continue          # most processes: no line to parse
            for line in text.splitlines():
                parts = line.split()
                if len(parts) < 5 or parts[3] != self.dev or int(parts[4]) != self.ino:
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                foff = int(parts[2], 16)
                if foff != 0:
                    out.append((pid, foff, hi - lo))
        return out

    @staticmethod
    def _overlaps(maps, off, ln):
        return any(foff < off + ln and off < foff + flen for _, foff, flen in maps)

    def _owner_maps(self, i):
        r = self.table.row[i]
        return owner_alive(r.pid, r.start) and \
            self._overlaps(self._pool_mappings([r.pid]), r.off, r.len)

    def _scan_all(self, box):
        """Worker thread: every process's slice mappings (reading all of
        /proc/*/maps takes tens of ms; the slow path must not wait for it)."""
        me = os.getpid()
        box.append(self._pool_mappings(int(p) for p in os.listdir("/proc")
                                       if p.isdigit() and int(p) != me))

    def _scan_result(self):
        """(start time, mappings) of a finished scan, else None (and a scan
        is started if none runs)."""
        if self.scan is None:
            box = []
            t = threading.Thread(target=self._scan_all, args=(box,), daemon=True,
                                 name="arena-maps-scan")
            self.scan = (time.monotonic(), t, box)
            t.start()
            self._count("arena_maps_scans")
            return None
        started, t, box = self.scan
        if t.is_alive():
            return None
        self.scan = None
        return started, (box[0] if box else None)

    def reclaim(self, sync=False):
        """Timer (and, with sync, a full arena): free quarantined slices whose
        bytes no log can reference and no process but the daemon maps:
        1. no Strata slot is owned by a dead process (else run a digest),
        2. none is owned by the slice's owner, the owner does not map it,
        3. a scan of every process that started after the slice was
           quarantined finds no mapping of it (a child forked with it).
        sync: scan in this thread now (no digest is waited for)."""
        now = time.monotonic()
        quarantined = [i for i in self.rows.values() if i not in self.attached]
        if not quarantined:
            return
        if not sync:
            if now < self.next_reclaim or self._digest_running():
                return
            self.next_reclaim = now + RECLAIM_INTERVAL_S
        slots = self.slots()
        dead = [s for s in slots if not owner_alive(*s)]
        if dead and sync:
            return
        if dead:
            if now - self.last_digest >= DIGEST_RETRY_S or self.digest_progress:
                self._start_digest()  # recovery first; look again when it is done
            return
        owned = set(slots)
        candidates = [i for i in quarantined
                      if (self.table.row[i].pid, self.table.row[i].start) not in owned
                      and not self._owner_maps(i)]
        if not candidates:
            return
        if sync:
            started, box = time.monotonic(), []
            self._scan_all(box)
            self._count("arena_maps_scans")
            result = (started, box[0])
        else:
            result = self._scan_result()
        if result is None:
            self.next_reclaim = 0.0   # poll the scan every tick
            return
        started, maps = result
        for i in candidates:
            r = self.table.row[i]
            if self.since[i] > started:
                self.next_reclaim = 0.0   # quarantined after the scan began: scan again
            elif maps is not None and not self._overlaps(maps, r.off, r.len):
                self._free(i)
        self._publish()

    def _digest_running(self):
        if self.digest is None:
            return False
        rc = self.digest.poll()
        if rc is None:
            return True
        self.digest = None
        self._count("arena_digests" if rc == 0 else "arena_digest_failures")
        self.digest_progress = False   # the next one waits DIGEST_RETRY_S
        self.next_reclaim = 0.0
        return False

    def _start_digest(self):
        """Strata recovery of dead processes' logs, in a child process so the
        slow path keeps serving while the digest copies."""
        self.last_digest = time.monotonic()
        self.digest = subprocess.Popen(
            [sys.executable, "-m", "strata.cli", "--pool", self.path, "digest"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True)

    # ---- reporting ----------------------------------------------------------

    def describe(self):
        lib, t = self.lib, self.table
        names = {lib.TAS_ARENA_LIVE: "live", lib.TAS_ARENA_QUARANTINED: "quarantined"}
        rows = []
        for off, i in sorted(self.rows.items()):
            r = t.row[i]
            rows.append({"row": i, "state": names.get(r.state, str(r.state)), "pid": r.pid,
                         "uid": r.uid, "app": r.app_id, "start": r.start, "off": r.off,
                         "len": r.len, "owner_alive": owner_alive(r.pid, r.start)})
        return {"pool": self.path, "ref_off": self.ref_off, "ref_bytes": self.ref_bytes,
                "free_bytes": sum(ln for _, ln in self.alloc.free), "slices": rows,
                "quarantined_bytes": sum(r["len"] for r in rows if r["state"] == "quarantined"),
                "digest_running": self.digest is not None}

    def _say_full(self, size, pid, uid):
        """Why a process got no receive buffers, at most every FULL_SAY_S:
        its socket calls fail (or, for a relay of an inherited connection,
        the program's stderr says so); the operator needs the keys."""
        now = time.monotonic()
        if now - self.full_said < FULL_SAY_S:
            return
        self.full_said = now
        lib, t = self.lib, self.table
        live = sum(1 for i in self.rows.values() if t.row[i].state == lib.TAS_ARENA_LIVE)
        print(f"tas: app pid {pid} (uid {uid}) refused: the NVM arena in {self.path} is full "
              f"({live} slices live, {len(self.rows) - live} quarantined until their Strata logs "
              f"are digested, {sum(ln for _, ln in self.alloc.free)} bytes free of "
              f"{self.ref_bytes}); each process takes buffers.app_segment = {size} bytes: "
              f"lower it, or make the ref area larger (strata mkfs --ref-size)",
              file=sys.stderr, flush=True)

    def _count(self, name, n=1):
        if self.stats is not None:
            self.stats.add(name, n)

    def _publish(self):
        if self.stats is None:
            return
        lib, t = self.lib, self.table
        states = [t.row[i].state for i in self.rows.values()]
        self.stats.set("arena_slices_live", states.count(lib.TAS_ARENA_LIVE))
        self.stats.set("arena_slices_quarantined", states.count(lib.TAS_ARENA_QUARANTINED))
        self.stats.set("arena_quarantined_bytes",
                       sum(t.row[i].len for i in self.rows.values()
                           if t.row[i].state == lib.TAS_ARENA_QUARANTINED))
        self.stats.set("arena_free_bytes", sum(ln for _, ln in self.alloc.free))

    def close(self):
        """Daemon stop: rows stay as they are (the next daemon reconciles)."""
        if self.digest is not None:
            self.digest.wait()
            self.digest = None
        if self.scan is not None:
            self.scan[1].join()
            self.scan = None
        self.base = self.table = None
        try:
            self.map.close()
        except BufferError:
            pass          # a cffi view still references it; freed with the process
        os.close(self.fd)
