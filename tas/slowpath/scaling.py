"""Core scaling policy (dissertation 3.2.4, workload proportionality).

Every `scaling.interval_ms` the slow path sums the idle share of the active
fast-path cores (busy and total TSC cycles each core keeps), smooths it with
an EWMA of 7/8 as the authors' implementation does, and
  - adds a core when fewer than `add_below_idle` cores are idle in aggregate,
  - removes one when more than `remove_above_idle` are idle,
one core at a time, then holds for `hold_intervals` intervals so the new
configuration is measured before the next decision.  The fast path applies
the count (tas_fp_set_active_cores); switched-off cores block.

An operator can pin the count (`tasctl cores --set N`), which turns the
automatic policy off until `tasctl cores --auto`.
"""
import time


class CoreScaler:
    def __init__(self, cfg, fp, stats):
        sc = cfg.scaling
        self.fp, self.lib, self.stats = fp, fp.lib, stats
        self.max = fp.ncores
        self.min = min(sc.min_cores, self.max)
        self.auto = sc.auto and self.max > self.min
        self.add_below, self.remove_above = sc.add_below_idle, sc.remove_above_idle
        self.interval = sc.interval_ms / 1000.0
        self.hold_intervals = sc.hold_intervals
        self._busy = fp.ffi.new("uint64_t *")
        self._total = fp.ffi.new("uint64_t *")
        self.prev = [self._load(i) for i in range(self.max)]
        self.idle_ewma = None
        self.hold = 0
        self.next = time.monotonic() + self.interval
        self.active = 0
        for name in ("fp_core_adds", "fp_core_removes"):
            stats.counter(name)     # shown as 0 before the first change
        # Start small when scaling automatically: load adds cores.
        self._apply(self.min if self.auto else self.max)

    def _load(self, core):
        self.lib.tas_fp_core_load(self.fp.handle, core, self._busy, self._total)
        return self._busy[0], self._total[0]

    def _apply(self, n):
        old = self.active
        self.active = self.lib.tas_fp_set_active_cores(self.fp.handle, n)
        self.stats.set("fp_cores_active", self.active)
        if old and self.active > old:
            self.stats.add("fp_core_adds", self.active - old)
        elif old and self.active < old:
            self.stats.add("fp_core_removes", old - self.active)
        self.idle_ewma = None       # the old average described other cores
        self.hold = self.hold_intervals

    def sample_idle(self):
        """Idle cores (0..active) over the last interval."""
        idle = 0.0
        for i in range(self.max):
            busy, total = self._load(i)
            pbusy, ptotal = self.prev[i]
            self.prev[i] = (busy, total)
            if i >= self.active:
                continue
            dt = total - ptotal
            # A core blocked all interval has not closed a loop iteration yet.
            idle += 1.0 if dt <= 0 else max(0.0, 1.0 - (busy - pbusy) / dt)
        return idle

    def tick(self):
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.interval
        idle = self.sample_idle()
        self.idle_ewma = idle if self.idle_ewma is None else 0.875 * self.idle_ewma + 0.125 * idle
        self.stats.set("fp_idle_cores_milli", int(self.idle_ewma * 1000))
        if not self.auto:
            return
        if self.hold > 0:
            self.hold -= 1
            return
        if self.idle_ewma < self.add_below and self.active < self.max:
            self._apply(self.active + 1)
        elif self.idle_ewma > self.remove_above and self.active > self.min:
            self._apply(self.active - 1)

    def set_manual(self, n):
        """Pin the active core count (1..max); the automatic policy stops."""
        if not 1 <= n <= self.max:
            raise ValueError(f"core count must be 1..{self.max} (dpdk.fp_cores), got {n}")
        self.auto = False
        self._apply(n)

    def set_auto(self):
        self.auto = self.max > self.min

    def status(self):
        return {"active": self.active, "max": self.max, "min": self.min, "auto": self.auto,
                "idle_cores": None if self.idle_ewma is None else round(self.idle_ewma, 3)}
