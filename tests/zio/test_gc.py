"""Garbage collection: the periodic (1 s) pass and the entry-count bound both
evict intermediates (filling them from their originals) without changing
what the program sees or sends."""
from harness_run import check_same

MIB = 1 << 20


def test_periodic_gc_evicts_idle_entries(tmp_path, input_file, libzio):
    script = "\n".join([
        f"alloc 0 {MIB}", f"alloc 1 {MIB}", f"alloc 2 {MIB}",
        "recv 0 0 900000", "cpy 0 100 1 4196 800000", "cpy 1 4196 2 50 700000",
        "sleep 2500",          # idle for longer than the GC age (100 ms here)
        "wr 0 0 900000 9",     # originals overwritten after eviction
        "rd 1 0 1048576", "rd 2 0 1048576", "send 2 0 1048576", "send 1 0 1048576",
    ]) + "\n"
    # A short age leaves the once-a-second GC thread a wide margin on a
    # loaded machine: both entries are old at every run in the idle window.
    c = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio, "ZIO_GC_AGE_MS": "100"})
    assert c["copies_elided"] == 2
    assert c["gc_runs"] >= 1 and c["gc_evictions"] >= 2
    assert c["faults_intermediate"] == 0   # eviction filled them, nothing faulted


def test_entry_bound_evicts_lru(tmp_path, input_file, libzio):
    ops = [f"alloc {b} {MIB}" for b in range(8)]
    for round_ in range(6):   # many small elided pieces -> many entries
        ops.append(f"recv 0 0 {MIB}")
        for b in range(1, 8):
            for piece in range(4):
                off = piece * 200000
                ops.append(f"cpy 0 {off + b * 7} {b} {off + 4096 * ((round_ + b) % 3)} 150000")
        ops += [f"send {b} 0 {MIB}" for b in range(8)]
    c = check_same("\n".join(ops) + "\n", tmp_path, input_file,
                   {"LD_PRELOAD": libzio, "ZIO_GC_MAX": "16"})
    assert c["copies_elided"] > 16 and c["gc_evictions"] > 0
    assert c["entries_live"] <= 16
