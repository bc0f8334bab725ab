"""Links (zio_link.c): below ZIO_LINK_MAX a copy from a stack's NVM original
is done plainly and linked to the original; an output of linked bytes
sends the original's bytes in their place after comparing them, so a log
still gets a reference.  Above it copies are elided and only their fringes
are linked.

Every script runs plainly and under libzio (orp_harness.c, test_orp.run):
stdout (buffer hashes, the file's bytes read back) must be identical."""
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from test_orp import BUF, KIB, PAGE, RING0, RING1, lines, run

LINKS = {"ZIO_LINK_MAX": "1048576"}   # the default, said explicitly
SYSCALLS = ("sys_uffd_register", "sys_uffd_unregister", "sys_uffd_fill", "sys_madvise",
            "sys_mincore")


def counters(log):
    return {k: int(v) for k, v in lines(log, "ctr")}


def prologue(tmp_path, bufs=1):
    """ring 0 registered whole, `bufs` fresh buffers, the output file"""
    return "\n".join(["ring 0 64", f"reg 0 0 {RING0}"] + [f"alloc {b} {BUF}" for b in range(bufs)]
                     + [f"open {tmp_path}/out.bin"]) + "\n"


def test_redis_set_path_linked_without_system_calls(tmp_path, libzio):
    """A 64 KiB value as Redis handles it under ORP: copied out of the ring
    into the query buffer, shifted 45 bytes down (sdsrange), copied into the
    AOF command buffer and that into the AOF buffer, which is written.  No
    copy is elided and libzio issues no system call; the write sends the
    ring's bytes (all 64 KiB linked), and the ring stays busy for the
    stack until the buffers are freed."""
    script = prologue(tmp_path, 3) + f"""cpy 0 1000 0 16 {64 * KIB + 45}
mov 0 61 16 {64 * KIB}
bcp 0 16 1 30 {64 * KIB}
bcp 1 30 2 5000 {64 * KIB}
pwr 2 5000 {64 * KIB} 100
frd 100 {64 * KIB}
try 0 0 {RING0}
free 0
free 1
free 2
try 0 0 {RING0}
""" + "".join(f"ctr {c}\n" for c in SYSCALLS + (
        "copies_elided", "copies_linked", "link_bytes_resolved", "link_mismatches",
        "outputs_resolved", "release_fill_bytes", "links_live"))
    log = run(script, tmp_path, libzio, env_extra=LINKS)
    ctr = counters(log)
    assert all(ctr[c] == 0 for c in SYSCALLS), ctr
    assert ctr["copies_elided"] == 0 and ctr["copies_linked"] == 4   # 3 copies and the move
    assert ctr["link_bytes_resolved"] == 64 * KIB and ctr["link_mismatches"] == 0
    assert ctr["outputs_resolved"] == 1
    assert lines(log, "try") == [["1", "0"], ["0", "0"]]   # busy, then free: nothing filled
    assert ctr["release_fill_bytes"] == 0 and ctr["links_live"] == 0


def test_link_out_min_sends_shorter_linked_parts_as_they_are(tmp_path, libzio):
    """ZIO_LINK_OUT_MIN (zio run --link-out-min): a linked part output on its
    own below it is written as the program's bytes, with no comparison (a
    log takes it inline); from it on, as the ring's."""
    script = prologue(tmp_path, 2) + f"""cpy 0 1000 0 16 {64 * KIB}
bcp 0 16 1 30 {64 * KIB}
pwr 1 30 {64 * KIB} 100
frd 100 {64 * KIB}
""" + "".join(f"ctr {c}\n" for c in ("copies_linked", "link_bytes_resolved", "outputs_resolved"))
    for out_min, resolved in ((128 * KIB, 0), (64 * KIB, 64 * KIB)):
        ctr = counters(run(script, tmp_path, libzio,
                           env_extra=dict(LINKS, ZIO_LINK_OUT_MIN=str(out_min))))
        assert ctr["copies_linked"] == 2 and ctr["link_bytes_resolved"] == resolved, (out_min, ctr)
        assert ctr["outputs_resolved"] == (1 if resolved else 0), (out_min, ctr)


def test_changed_bytes_are_sent_as_they_are(tmp_path, libzio):
    """A large copy over linked bytes unlinks them at once (no mismatch).  A
    byte the program stores into linked memory (no call libzio sees) makes
    that link compare unequal: its bytes go out as they are, counted as a
    mismatch, and the other link is still sent as the ring's."""
    script = prologue(tmp_path, 1) + f"""cpy 0 0 0 0 {100 * KIB}
ovr 0 {40 * KIB} {20 * KIB} 3
pwr 0 0 {100 * KIB} 0
ctr link_mismatches
ctr link_bytes_resolved
poke 0 {70 * KIB} 5
pwr 0 0 {100 * KIB} {100 * KIB}
frd 0 {200 * KIB}
ctr link_mismatches
ctr link_bytes_resolved
"""
    log = run(script, tmp_path, libzio, env_extra=LINKS)
    assert lines(log, "ctr") == [["link_mismatches", "0"], ["link_bytes_resolved", str(80 * KIB)],
                                 ["link_mismatches", "1"], ["link_bytes_resolved", str(120 * KIB)]]


def test_short_linked_piece_is_sent_as_it_is(tmp_path, libzio):
    """A linked part shorter than the threshold that continues no original
    piece goes out as the program's bytes: a log would take it inline
    anyway (and count a fallback)."""
    script = prologue(tmp_path, 1) + f"""cpy 0 0 0 0 {100 * KIB}
ovr 0 {10 * KIB} {20 * KIB} 3
pwr 0 0 {100 * KIB} 0
frd 0 {100 * KIB}
ctr link_bytes_resolved
"""
    log = run(script, tmp_path, libzio, env_extra=LINKS)
    assert counters(log) == {"link_bytes_resolved": 70 * KIB}


def test_forced_release_drops_links_without_filling(tmp_path, libzio):
    """The stack takes its ring pages back (busy, so zio_release) and
    overwrites them: the links go (nothing to fill, the buffer holds its
    bytes) and the next write sends the buffer's own, old, bytes."""
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {BUF}
ovr 0 0 {BUF} 1
open {tmp_path}/out.bin
cpy 0 0 0 100 {128 * KIB}
lap 0 0 {RING0} 9
pwr 0 100 {128 * KIB} 0
frd 0 {128 * KIB}
ctr link_mismatches
ctr link_bytes_resolved
ctr release_fill_bytes
"""
    log = run(script, tmp_path, libzio, env_extra=LINKS)
    assert lines(log, "lap") == [["1", "0"]]
    assert counters(log) == {"link_mismatches": 0, "link_bytes_resolved": 0,
                             "release_fill_bytes": 0}


def test_large_copy_into_fresh_memory(tmp_path, libzio):
    """A stack's stream piece (zio_copy_continued) from 128 KiB on is linked
    only into resident memory (one mincore): into fresh pages it is elided,
    as the value may go on to a MiB, whose plain copy would fault every
    page in.  A program's copy below 512 KiB is linked also into fresh
    memory: its pages fault in once, and the allocator hands them back
    resident for the next copies, which are then linked without a system
    call (eliding into them every time kept Redis's buffers absent)."""
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {BUF}
alloc 1 {BUF}
alloc 2 {BUF}
ovr 1 0 {BUF} 1
scpy 0 0 0 100 {200 * KIB} 0
ctr copies_elided
ctr copies_linked
scpy 0 0 1 100 {200 * KIB} 0
ctr copies_elided
ctr copies_linked
cpy 0 0 2 100 {200 * KIB}
ctr copies_elided
ctr copies_linked
ctr sys_mincore
"""
    log = run(script, tmp_path, libzio, env_extra=LINKS)
    assert lines(log, "ctr") == [["copies_elided", "1"], ["copies_linked", "0"],
                                 ["copies_elided", "1"], ["copies_linked", "1"],
                                 ["copies_elided", "1"], ["copies_linked", "2"],
                                 ["sys_mincore", "2"]]


def test_elided_copy_fringes_are_linked(tmp_path, libzio):
    """Above ZIO_LINK_MAX the copy is elided; its fringe bytes (the partial
    pages at each end) are linked, so the whole copy resolves to the ring."""
    script = prologue(tmp_path, 1) + f"""cpy 0 100 0 1000 {200 * KIB}
pwr 0 1000 {200 * KIB} 0
frd 0 {200 * KIB}
ctr copies_elided
ctr link_bytes_resolved
"""
    log = run(script, tmp_path, libzio, env_extra={"ZIO_LINK_MAX": "65536"})
    ctr = counters(log)
    assert ctr["copies_elided"] == 1
    assert 0 < ctr["link_bytes_resolved"] < 2 * PAGE


OPS = ("cpy", "cpy", "bcp", "bcp", "mov", "ovr", "poke", "lap", "pwr", "pwr", "realloc")


@st.composite
def link_scripts(draw):
    """Random copies out of two rings, chained copies between buffers,
    overlapping moves, overwrites, direct stores, laps of the stack and
    writes to a file, whose bytes are read back at the end.  Copies, moves
    and writes mostly take (part of) what an earlier copy wrote, as Redis
    passes a value on."""
    ops = ["ring 0 64", "ring 1 32", f"reg 0 0 {RING0}", f"reg 1 0 {RING1}", "open PATH"]
    ops += [f"alloc {b} {BUF}" for b in range(3)]
    fend = 0
    hot = []   # (buffer, offset, length) an earlier copy wrote

    def pick(most):
        """a buffer range: within an earlier copy's, or anywhere"""
        if hot and draw(st.integers(0, 3)) > 0:
            b, off, n = draw(st.sampled_from(hot))
            a = draw(st.integers(0, min(n - 1, 2 * PAGE)))
            return b, off + a, min(n - a, most) if draw(st.booleans()) else \
                draw(st.integers(1, min(n - a, most)))
        n = draw(st.integers(1, most))
        return draw(st.integers(0, 2)), draw(st.integers(0, BUF - n)), n

    for k in range(draw(st.integers(3, 16))):
        op = "cpy" if k == 0 else draw(st.sampled_from(OPS))
        b = draw(st.integers(0, 2))
        if op == "cpy":
            r, size = draw(st.sampled_from([(0, RING0), (1, RING1)]))
            n = draw(st.one_of(st.integers(16 * KIB, size), st.integers(1, size)))
            roff = draw(st.integers(0, size - n))
            off = draw(st.integers(0, BUF - n))
            ops.append(f"cpy {r} {roff} {b} {off} {n}")
            hot.append((b, off, n))
        elif op == "bcp":
            b, off, n = pick(draw(st.sampled_from([300 * KIB, 16 * KIB])))
            c = (b + draw(st.integers(1, 2))) % 3
            doff = draw(st.integers(0, BUF - n))
            ops.append(f"bcp {b} {off} {c} {doff} {n}")
            hot.append((c, doff, n))
        elif op == "mov":
            b, off, n = pick(300 * KIB)
            shift = draw(st.sampled_from([45, -45, 1, -4096, 4141]))
            if n < 16 * KIB or off + shift < 0 or off + shift + n > BUF:
                continue
            ops.append(f"mov {b} {off} {off + shift} {n}")
            hot.append((b, off + shift, n))
        elif op == "ovr":
            b, off, n = pick(100 * KIB)
            ops.append(f"ovr {b} {off} {n} {draw(st.integers(0, 9))}")
        elif op == "poke":
            b, off, n = pick(1)
            ops.append(f"poke {b} {off} {draw(st.integers(0, 255))}")
        elif op == "lap":
            r, size = draw(st.sampled_from([(0, RING0), (1, RING1)]))
            off = draw(st.integers(0, size // PAGE - 1)) * PAGE
            n = draw(st.integers(1, size // PAGE - off // PAGE)) * PAGE
            ops.append(f"lap {r} {off} {n} {draw(st.integers(0, 99))}")
        elif op == "realloc":   # free and allocate again: the allocator reuses memory
            ops += [f"free {b}", f"alloc {b} {BUF}", f"ovr {b} 0 {BUF} {b}"]
            hot = [h for h in hot if h[0] != b]
        else:
            b, off, n = pick(300 * KIB)
            ops.append(f"pwr {b} {off} {n} {fend}")
            fend += n
    if fend:
        ops.append(f"frd 0 {fend}")
    ops += [f"rd {b} 0 {BUF}" for b in range(3)]
    ops += ["free 0", "free 1", "free 2", f"try 0 0 {RING0}", f"try 1 0 {RING1}",
            "ctr release_fill_bytes", "ctr links_live"]
    return "\n".join(ops) + "\n"


@settings(max_examples=int(os.environ.get("ZIO_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=link_scripts(), link_max=st.sampled_from(["262144", "65536", "0"]))
def test_linked_and_elided_copies_write_the_plain_bytes(script, link_max, tmp_path, libzio):
    """Whatever mix of linked copies (ZIO_LINK_MAX 256 KiB), elided copies
    with linked fringes (64 KiB) and elision alone (0): the buffers and the
    file hold the bytes of the plain run, and once every buffer is freed
    nothing holds a ring page and no link is left."""
    script = script.replace("PATH", str(tmp_path / "out.bin"))
    log = run(script, tmp_path, libzio, env_extra={"ZIO_LINK_MAX": link_max})
    assert lines(log, "try") == [["0", "0"], ["0", "0"]]
    assert counters(log)["links_live"] == 0


JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def test_linked_buffer_grown_in_place_keeps_its_links(tmp_path, libzio):
    """Redis's AOF buffer holds linked values and grows by realloc.  With
    jemalloc (Redis's allocator) libzio grows it where it is (xallocx)
    when it can: nothing is copied and the links still send the ring's
    bytes; where it cannot, the buffer moves through the interposed copy
    and its links move along.  Either way the bytes are the plain run's,
    every grow is counted once, and the ring is free once the buffer is."""
    if not os.path.exists(JEMALLOC):
        import pytest
        pytest.fail(f"{JEMALLOC} missing: deploy/setup installs libjemalloc2 (Redis's allocator)")
    grows = [96, 160, 288, 544]   # KiB, each from the buffer's current place
    script = prologue(tmp_path, 2) + f"""grow 0 {64 * KIB}
cpy 0 1000 0 0 {64 * KIB}
""" + "".join(f"grow 0 {g * KIB}\nrd 0 0 {64 * KIB}\n" for g in grows) + f"""alloc 1 {32 * KIB}
grow 0 {1100 * KIB}
pwr 0 0 {64 * KIB} 0
frd 0 {64 * KIB}
try 0 0 {RING0}
free 0
try 0 0 {RING0}
ctr reallocs_tracked_in_place
ctr reallocs_tracked_moved
ctr link_bytes_resolved
ctr link_mismatches
"""
    log = run(script, tmp_path, libzio, after=JEMALLOC, env_extra=LINKS)
    ctr = counters(log)
    assert ctr["reallocs_tracked_in_place"] + ctr["reallocs_tracked_moved"] == len(grows) + 1, ctr
    assert ctr["reallocs_tracked_in_place"] >= 1, ctr   # jemalloc grows a lone large buffer in place
    assert ctr["link_bytes_resolved"] == 64 * KIB and ctr["link_mismatches"] == 0, ctr
    assert lines(log, "try") == [["1", "0"], ["0", "0"]]
