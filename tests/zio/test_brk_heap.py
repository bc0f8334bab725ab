"""Intermediates on glibc's brk heap that straddle two VMAs.

When glibc grows the heap while its top pages are still registered with
userfaultfd (an idle registration after a free, or a live intermediate), the
kernel cannot extend that VMA and makes a new one, with an anon_vma of its
own once glibc writes the new top chunk's header.  Two such VMAs never merge,
also not when a later elision registers both alike, and UFFDIO_COPY refuses
(ENOENT) a range across them: libzio's fills used to fail whole and the
intermediate pages read as zeros.  Every script here takes that path
(`fills_split_at_vma` > 0) and must observe and send exactly the bytes of a
plain run."""
import pytest

from harness_run import check_same

KIB = 1 << 10
N = 256 * KIB


@pytest.fixture
def brk_heap(monkeypatch):
    """Both runs allocate every buffer from the brk heap, as glibc does for
    256 KiB blocks once a free of a mapped chunk has raised its threshold."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(1 << 30))


def check(script, tmp_path, input_file, libzio):
    c = check_same("\n".join(script) + "\n", tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert c["copies_elided"] >= 2 and c["uffd_errors"] == 0
    assert c["fills_split_at_vma"] > 0, "the heap never straddled two VMAs: nothing tested"
    return c


# an elision, a free (glibc trims the heap into the registered range), and a
# second elision into memory glibc grew the heap back into
PROLOGUE = [f"alloc 0 {N}", f"recv 0 0 {N}", f"alloc 1 {N}", f"cpy 0 0 1 0 {N}",
            "free 1", f"alloc 1 {N}", f"cpy 0 0 1 0 {N}"]


def test_input_into_the_original_fills_across_vmas(tmp_path, input_file, libzio, brk_heap):
    check(PROLOGUE + [f"recv 0 0 {N}", f"rd 1 0 {N}", f"send 1 0 {N}"],
          tmp_path, input_file, libzio)


def test_gc_eviction_fills_across_vmas(tmp_path, input_file, libzio, brk_heap):
    c = check(PROLOGUE + ["sleep 2500", f"rd 1 0 {N}", f"send 1 0 {N}", f"send 0 0 {N}"],
              tmp_path, input_file, libzio)
    assert c["gc_evictions"] > 0


def test_echo_chain_after_glibc_raises_its_mmap_threshold(tmp_path, input_file, libzio):
    """No tuning: glibc's own threshold.  Freeing a mapped 256 KiB block
    raises it, so later 256 KiB blocks come from the brk heap, which grows
    and shrinks every round.  Per round (the ORP echo pattern with one more
    copy): input, a copy, a copy of the copy, output, the next input
    releasing the originals (the fills), both copies sent, frees.  No `rd`:
    stdio's buffer, allocated at the first printf, would pin the heap's top."""
    script = [f"alloc 3 {N}", "free 3"]
    for r in range(6):
        script += [f"alloc 0 {N}", f"recv 0 0 {N}", f"alloc 1 {N}",
                   f"cpy 0 {r * 16} 1 0 {N - r * 16}", f"alloc 2 {N}",
                   f"cpy 1 0 2 {r * 8} {N - r * 16}", f"send 2 0 {N}",
                   f"recv 0 0 {N}", f"send 1 0 {N}", f"send 2 0 {N}", "free 2", "free 1", "free 0"]
    check(script, tmp_path, input_file, libzio)
