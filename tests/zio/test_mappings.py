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
