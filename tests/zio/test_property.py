"""Property test: random recv/copy/touch/send/realloc/free/discard scripts give the
same observations and the same output bytes plainly and under libzio."""
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from harness_run import check_same

KIB = 1024
BIG = [64 * KIB, 256 * KIB + 100, 1024 * KIB]


@st.composite
def scripts(draw):
    nbuf = 4
    sizes = [draw(st.sampled_from(BIG)) for _ in range(nbuf)]
    ops = [f"alloc {b} {s}" for b, s in enumerate(sizes)]
    # prologue: one guaranteed elision, so no example can pass vacuously
    ops += [f"recv 0 0 {sizes[0]}", f"cpy 0 0 1 {KIB} {min(sizes[0], sizes[1] - KIB)}"]

    def span(b, large):
        size = sizes[b]
        n = draw(st.integers(min(size, 20 * KIB), size)) if large else \
            draw(st.integers(1, min(size, 12 * KIB)))
        return draw(st.integers(0, size - n)), n

    for _ in range(draw(st.integers(5, 25))):
        kind = draw(st.sampled_from(["recv", "read", "cpy", "cpy", "cpy", "mov", "wr", "wr",
                                     "rd", "rd", "send", "write", "writev", "realloc", "free",
                                     "discard"]))
        b = draw(st.integers(0, nbuf - 1))
        if kind in ("recv", "read", "send", "write", "writev", "rd", "discard"):
            off, n = span(b, draw(st.booleans()) or kind in ("recv", "read"))
            ops.append(f"{kind} {b} {off} {n}")
        elif kind in ("cpy", "mov"):
            d = draw(st.integers(0, nbuf - 1))
            if kind == "cpy" and d == b:
                continue
            soff, n = span(b, True)
            n = min(n, sizes[d])
            doff = draw(st.integers(0, sizes[d] - n))
            ops.append(f"{kind} {b} {soff} {d} {doff} {n}")
        elif kind == "wr":
            off, n = span(b, False)
            ops.append(f"wr {b} {off} {n} {draw(st.integers(0, 255))}")
        elif kind == "realloc":
            sizes[b] = draw(st.sampled_from(BIG))
            ops.append(f"realloc {b} {sizes[b]}")
        else:
            sizes[b] = draw(st.sampled_from(BIG))
            ops += [f"free {b}", f"alloc {b} {sizes[b]}"]
    for b in range(nbuf):
        ops.append(f"send {b} 0 {sizes[b]}")
    return "\n".join(ops) + "\n"


@settings(max_examples=int(os.environ.get("ZIO_PROPERTY_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=scripts())
def test_random_scripts_identical_under_zio(script, tmp_path, input_file, libzio):
    counters = check_same(script, tmp_path, input_file, {"LD_PRELOAD": libzio})
    assert counters["copies_elided"] > 0 and counters["bytes_elided"] > 0
    assert counters["uffd_errors"] == 0
