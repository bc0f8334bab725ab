"""Memory freed while it held intermediates and then reused: libzio keeps such
ranges registered with userfaultfd (idle registrations) so the next elision
there is cheap.  Whatever reaches that memory next -- a direct write or read,
a plain copy, an input, a discard, another elision -- must see exactly what
it would without libzio."""
from harness_run import check_same

KIB = 1 << 10
MIB = 1 << 20


def test_reuse_after_free(tmp_path, input_file, libzio):
    n = 256 * KIB
    script = "\n".join([
        f"alloc 0 {MIB}", f"recv 0 0 {MIB}",
        # elide, free, reallocate (the allocator hands the same memory back)
        f"alloc 1 {n}", f"cpy 0 100 1 0 {n}", "free 1", f"alloc 1 {n}",
        "wr 1 5000 3000 7", f"rd 1 0 {n}",                 # touched (alloc zeroes it)
        "free 1", f"alloc 1 {n}", f"cpy 0 300 1 0 {n}",    # elided again
        "rd 1 70000 100", "free 1", f"alloc 1 {n}",
        f"alloc 2 {n}", f"wr 2 0 {n} 9",
        f"cpy 2 0 1 0 {n}",                                # plain copy over it
        f"send 1 0 {n}", "free 1", f"alloc 1 {n}",
        f"cpy 0 500 1 0 {n}", "free 1", f"alloc 1 {n}",
        f"recv 1 0 {n}", f"send 1 0 {n}",                  # input over it
        "free 1", f"alloc 1 {n}", f"cpy 0 900 1 0 {n}", "free 1", f"alloc 1 {n}",
        f"discard 1 0 {n}", f"rd 1 0 {n}",                 # discarded, read
        "free 1", f"alloc 1 {n}", f"cpy 0 40 1 0 {n}", "free 1", f"alloc 1 {n}",
        f"realloc 1 {2 * n}", f"rd 1 0 {2 * n}", f"send 1 0 {n}",
    ]) + "\n"
    c = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] >= 4 and c["uffd_errors"] == 0


def test_fringes_written_into_idle_pages(tmp_path, input_file, libzio):
    """Memory reused without being touched first (as an allocator hands out a
    buffer the program fills with one large copy): the copy's fringe pages
    land on idle pages of the last use.  They are mapped (zero filled) and
    written without a fault, and the rest of the range stays registered for
    the elision, instead of the whole idle range being unregistered."""
    n = 300000
    ops = [f"alloc 0 {MIB}", f"recv 0 0 {MIB}"]
    for k in range(6):
        d, s, m = 50 + k * 1500, 100 + k * 9000, n - 20000 - k * 1000
        ops += [f"fresh 1 {n}", f"cpy 0 {s} 1 {d} {m}", f"send 1 {d} {m}", "free 1"]
    ops += [f"fresh 1 {n}", f"cpy 0 7 1 4100 {n - 9000}", f"rd 1 4100 {n - 9000}"]
    c = check_same("\n".join(ops) + "\n", tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] == 7 and c["uffd_errors"] == 0
    assert c["idle_pages_zero_filled"] > 0, "no fringe landed on an idle page: nothing tested"
    assert c["faults_untracked"] == 0, "a fringe write faulted into the handler"


def test_free_of_many_intermediates_then_reuse(tmp_path, input_file, libzio):
    """An allocation holding more intermediates than free() keeps idle one by
    one (64) is kept whole; copies into the reused memory stay exact."""
    mib8 = 8 * MIB
    ops = [f"alloc 0 {mib8}", f"alloc 2 {MIB}", f"free 2", f"recv 0 0 {mib8}", f"alloc 1 {mib8}"]
    for k in range(70):   # 70 values of 64 KiB with 40 KiB of other bytes between
        ops.append(f"cpy 0 {k * 70000 + 3} 1 {k * 106496 + 100} 65536")
    ops += ["free 1", f"fresh 1 {mib8}",
            f"cpy 0 5 1 3000 1000000", "send 1 3000 1000000", "rd 1 9000 5000"]
    c = check_same("\n".join(ops) + "\n", tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] == 71 and c["uffd_errors"] == 0 and c["frees_intermediate"] == 70
