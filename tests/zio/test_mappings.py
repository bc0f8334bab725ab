"""Memory the program maps, unmaps and discards itself: shared destinations,
munmap of buffers holding intermediates, MADV_DONTNEED over originals and
intermediates.  Output and observations must match a plain run."""
from harness_run import check_same

MIB = 1 << 20


def test_shared_destinations_and_munmap(tmp_path, input_file, libzio):
    script = "\n".join([
        f"alloc 0 {MIB}", f"shalloc 1 {MIB}", f"recv 0 0 {MIB}",
        "cpy 0 100 1 4196 800000",            # into untouched shared memory
        "rd 1 5000 2000", "send 1 0 1048576",
        f"free 1", f"shalloc 1 {MIB}",         # munmap, then (likely) the same range again
        "wr 1 0 4096 3", "send 1 0 1048576",
        f"shalloc 3 {MIB}", "wr 3 0 1048576 5",  # touched shared memory: copies stay plain
        "cpy 0 0 3 8192 900000", "send 3 0 1048576", "rd 3 0 1048576",
    ]) + "\n"
    c = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] >= 1 and c["uffd_errors"] == 0


def test_discard_originals_and_intermediates(tmp_path, input_file, libzio):
    script = "\n".join([
        f"alloc 0 {MIB}", f"alloc 1 {MIB}", f"alloc 2 {MIB}", f"recv 0 0 {MIB}",
        "cpy 0 10 1 5000 900000", "cpy 1 5000 2 300 700000",
        "discard 0 0 600000",                 # original pages dropped: copies keep the data
        "rd 1 0 1048576", "discard 2 100000 300000",   # intermediate pages dropped
        "rd 2 0 1048576", "send 2 0 1048576", "send 1 0 1048576", "send 0 0 1048576",
    ]) + "\n"
    c = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] == 2 and c["uffd_errors"] == 0


def test_copy_over_more_intermediates_than_one_round_takes(tmp_path, input_file, libzio):
    """An AOF-like buffer made of 12 separate intermediates (more than the 8
    pieces one round of a copy elides) copied on as a whole, as a realloc of
    Redis's AOF buffer does: every page of the 12 is elided again, none read
    plainly through its intermediate (that faulted in every page past the
    eighth piece, and the faults switched the site off)."""
    mib4 = 4 * MIB
    ops = [f"alloc 0 {mib4}", f"alloc 1 {mib4}", f"alloc 2 {mib4}", f"recv 0 0 {mib4}"]
    for k in range(12):   # 12 values of 64 KiB with 20 KiB of other bytes between
        ops.append(f"cpy 0 {k * 70000 + 3} 1 {k * 86016 + 100} 65536")
    (tmp_path / "base").mkdir()
    base = check_same("\n".join(ops) + "\n", tmp_path / "base", input_file, {"LD_PRELOAD": libzio})
    ops += ["cpy 1 0 2 4096 1040000", "send 2 0 1100000", "send 1 0 1040000"]
    c = check_same("\n".join(ops) + "\n", tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert base["copies_elided"] == 12 and c["copies_elided"] == 13
    assert c["bytes_elided"] == 2 * base["bytes_elided"]


def test_mapping_placed_over_an_original(tmp_path, input_file, libzio):
    """mmap MAP_FIXED (and mremap onto it) over memory holding an original
    that an intermediate still depends on: the original's bytes are pushed
    to the intermediate first, as for munmap, not read from the new mapping."""
    for how in (1, 2):
        script = "\n".join([
            f"anon 1 {MIB}", f"alloc 2 {MIB}", f"recv 1 0 {MIB}",
            "cpy 1 100 2 4196 800000",        # 2 depends on the original in 1
            f"reshare 1 {how}",               # 1 is a new (zero) mapping now
            "rd 2 0 1048576", "send 2 0 1048576", "rd 1 0 1048576",
        ]) + "\n"
        (tmp_path / str(how)).mkdir()
        c = check_same(script, tmp_path / str(how), input_file, {"LD_PRELOAD": libzio})
        assert c["copies_elided"] == 1 and c["uffd_errors"] == 0
