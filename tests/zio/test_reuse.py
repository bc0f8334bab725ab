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
