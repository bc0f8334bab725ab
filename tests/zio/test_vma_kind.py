"""The mapping-kind cache (zio_vma.c): an elision into memory libzio knows
to be private anonymous drops its pages with one MADV_DONTNEED and asks
mincore nothing; memory of another kind (shared) keeps the residency checks.
When the program replaces private memory by a shared mapping at the same
address -- munmap then a mapping no interposer sees, mmap MAP_FIXED over it,
mremap onto it -- the next copy there must not be elided as if it were still
private (MADV_DONTNEED would leave the shared pages in place and the program
would read them instead of the copied bytes).  Output and observations must
match a plain run."""
import pytest

from harness_run import check_same

MIB = 1 << 20


def test_private_anonymous_needs_no_residency_probe(tmp_path, input_file, libzio):
    """mmap'd and malloc'd (glibc: an internal mmap, learned from
    /proc/self/maps) private memory, elided into repeatedly."""
    ops = [f"alloc 0 {MIB}", f"anon 1 {MIB}", f"alloc 2 {MIB}", f"recv 0 0 {MIB}",
           "samerun 0 2"]
    for k in range(4):
        ops += [f"cpy 0 {100 + k} 1 {4196 + k * 10} 800000", f"rd 1 {k * 5000} 3000",
                f"cpy 1 {5000 + k} 2 {300 + k} 700000", "send 2 0 1048576"]
    notes = tmp_path / "notes"
    c = check_same("\n".join(ops) + "\n", tmp_path, input_file,
                   {"LD_PRELOAD": libzio, "ZIO_HARNESS_NOTES": str(notes)})
    assert c["copies_elided"] == 8 and c["uffd_errors"] == 0
    assert c["sys_mincore"] == 0, "private anonymous memory was probed with mincore"
    assert c["vma_kind_cache_hits"] >= 4   # (a copy over intermediates needs none)
    # the malloc'd buffers were learned from the file once for the run of
    # mappings they lie in, not once per copy (registration splits VMAs; per
    # copy would be 4 reads): one read if the kernel placed the two buffers'
    # mappings in one run of contiguous private anonymous mappings (the
    # harness looked), two if not.
    (same,) = notes.read_text().split()[1:]
    assert c["vma_maps_reads"] == (1 if same == "1" else 2)


@pytest.mark.parametrize("how", [0, 1, 2], ids=["munmap-unseen-mmap", "mmap-fixed", "mremap"])
def test_private_memory_replaced_by_shared(tmp_path, input_file, libzio, how):
    script = "\n".join([
        f"alloc 0 {MIB}", f"anon 1 {MIB}", f"recv 0 0 {MIB}",
        "cpy 0 100 1 4196 800000",            # private: elided, kind cached
        "rd 1 5000 2000", "send 1 0 1048576",
        f"reshare 1 {how}",                   # now shared memory at the same address
        f"wr 1 0 {MIB} 3",                    # its pages are resident (in its file)
        "cpy 0 200 1 8192 900000",            # must not be an intermediate
        "rd 1 0 1048576", "send 1 0 1048576",
        "discard 1 0 1048576", f"wr 1 0 20000 5",   # madvise of the shared memory
        "cpy 0 300 1 4096 600000", "rd 1 0 1048576", "send 1 0 1048576",
    ]) + "\n"
    c = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] == 1 and c["uffd_errors"] == 0
    assert c["not_anonymous_fallbacks"] == 2   # both copies into the shared mapping
