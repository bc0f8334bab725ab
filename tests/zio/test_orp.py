"""zIO's side of ORP (design T1): stack-private NVM originals registered once
per lap, overlapping moves re-pointed to the original instead of faulted in,
and zio_release_if_unshared() answering busy or releasing.

Every script runs plainly and under libzio through tests/zio/orp_harness.c:
the observed bytes must be identical; what only libzio can tell (try-release
answers, resolved pieces, counter deltas per move) is in the harness log."""
import os
import subprocess

from hypothesis import HealthCheck, given, settings, strategies as st

from zio_testlib import ROOT, built

KIB = 1024
PAGE = 4096
RING0, RING1 = 64 * PAGE, 32 * PAGE
BUF = 640 * KIB


def run(script, tmp_path, libzio, after=None, env_extra=None):
    """Run the script plainly and under libzio (preloaded before `after`, a
    shim such as libstrata, which both runs preload); return the zio log.
    Copies are elided whatever their size (ZIO_LINK_MAX=0: no copy is
    linked instead, test_orp_links.py tests that) unless env_extra says."""
    env_extra = {"ZIO_LINK_MAX": "0", **(env_extra or {})}
    harness = built("zio_orp_harness")
    outs = []
    plain_env = {"LD_PRELOAD": after} if after else {}
    zio_env = {"LD_PRELOAD": f"{libzio}:{after}" if after else libzio}
    for name, env in (("plain", plain_env), ("zio", zio_env)):
        env.update(env_extra or {})
        log = tmp_path / f"{name}.log"
        # no periodic GC: an eviction between two ops would fill intermediates
        # and change what try-release may answer
        proc = subprocess.run([harness, str(log)], input=script.encode(), capture_output=True,
                              timeout=60, env=dict(os.environ, ZIO_GC_AGE_MS="600000", **env))
        assert proc.returncode == 0, proc.stderr.decode()
        outs.append((proc.stdout, log.read_text().splitlines()))
    (plain_out, plain_log), (zio_out, zio_log) = outs
    assert plain_log[0] == "plain" and zio_log[0] == "zio"
    assert zio_out == plain_out, "bytes differ under libzio"
    return zio_log[1:]


def lines(log, op):
    return [line.split()[1:] for line in log if line.split()[0] == op]


def test_sdsrange_move_repointed_to_ring(tmp_path, libzio):
    """Redis's sdsrange: a value received into a buffer (copy from the ring
    elided) is shifted 45 bytes down.  The move is re-pointed, faults
    nothing, and the moved value resolves to the ring 45 bytes further on."""
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {300 * KIB}
cpy 0 1000 0 16 200000
res 0 16 200000
mov 0 61 16 199955
res 0 16 199955
ctr copies_plain
ctr bytes_plain_large
ctr faults_intermediate
rd 0 0 {300 * KIB}
"""
    log = run(script, tmp_path, libzio)
    before, after = lines(log, "res")
    assert lines(log, "mov") == [["1", "0"]]   # re-pointed, no fault
    ring_before = [p for p in before[1:] if p.startswith("0:")]
    ring_after = [p for p in after[1:] if p.startswith("0:")]
    assert len(ring_before) == 1 and len(ring_after) == 1
    off_b, len_b = map(int, ring_before[0][2:].split("+"))
    off_a, len_a = map(int, ring_after[0][2:].split("+"))
    assert off_a == off_b + 45 and len_a >= 150 * KIB
    ctr = {k: int(v) for k, v in lines(log, "ctr")}
    assert ctr == {"copies_plain": 0, "bytes_plain_large": 0, "faults_intermediate": 0}


def test_release_if_unshared_busy_then_free(tmp_path, libzio):
    """Busy (nothing filled, the copy still resolves to the ring) while an
    intermediate depends on the ring; 0 once it was overwritten or freed; a
    forced release counts the bytes it filled; bad arguments give EINVAL."""
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {BUF}
alloc 1 {BUF}
cpy 0 0 0 0 {RING0}
cpy 0 8192 1 100 {128 * KIB}
try 0 0 {RING0}
try 0 8192 4096
tryres 0 0 {RING0}
res 0 0 {RING0}
ovr 0 0 {BUF} 3
try 0 {200 * KIB} {32 * KIB}
try 0 0 {RING0}
free 1
try 0 0 {RING0}
reg 0 0 {RING0}
cpy 0 0 0 4096 {RING0}
lap 0 0 {RING0} 7
try 0 0 {RING0}
rd 0 0 {BUF}
ctr api_release_busy
"""
    log = run(script, tmp_path, libzio)
    tries = lines(log, "try")
    assert tries == [["1", "0"], ["1", "0"], ["0", "0"], ["1", "0"], ["0", "0"], ["0", "0"]]
    assert lines(log, "tryres")[0][:-2] and set(lines(log, "tryres")[0][:-2]) == {"1"}
    assert lines(log, "tryres")[0][-2:] == ["fill", "0"]
    assert any(p.startswith("0:") for p in lines(log, "res")[0][1:])   # still intermediate
    (lap_rc, lap_fill), = lines(log, "lap")
    assert lap_rc == "1" and int(lap_fill) >= RING0 - 2 * PAGE
    assert lines(log, "badargs") == [["-1", "1"], ["-1", "1"]]
    busy = 3 + len(lines(log, "tryres")[0][:-2]) + 1   # tries, tryres, the lap
    assert lines(log, "ctr") == [["api_release_busy", str(busy)]]


def test_ring_pages_registered_once_per_lap(tmp_path, libzio):
    """libtas registers each received ring page once per lap, page by page,
    and releases it before the next lap overwrites it.  Every lap's copies are
    elided from the current lap's bytes and resolve to the ring."""
    ops = ["ring 0 16", "alloc 0 %d" % (16 * PAGE), "alloc 1 %d" % (16 * PAGE)]
    for lap in range(4):
        if lap:
            ops.append(f"lap 0 0 {16 * PAGE} {lap}")   # release, overwrite, register
        else:
            ops += [f"reg 0 {p * PAGE} {PAGE}" for p in range(16)]
        b = lap % 2
        ops += [f"cpy 0 {100 + lap} {b} 0 {12 * PAGE}", f"res {b} 0 {12 * PAGE}",
                f"mov {b} 45 0 {11 * PAGE}", f"res {b} 0 {11 * PAGE}"]
    # (reading a buffer here would fault it in: the policy would rightly
    # stop eliding; the final digest reads everything)
    ops.append("ctr copies_elided")
    log = run("\n".join(ops) + "\n", tmp_path, libzio)
    res = lines(log, "res")
    assert len(res) == 8
    for r in res:
        assert any(p.startswith("0:") for p in r[1:]), r
    assert all(m == ["1", "0"] for m in lines(log, "mov"))
    laps = lines(log, "lap")
    # lap 1 finds lap 0's copy in buffer 0; later laps the other buffer's
    assert all(rc == "1" and int(fill) > 0 for rc, fill in laps)
    assert int(lines(log, "ctr")[0][1]) == 8   # 4 copies + 4 re-pointed moves


SHIFTS = [45, -45, 1, -1, 4095, -4096, 4141, -8200, 3 * PAGE + 7]


@st.composite
def t1_scripts(draw):
    """A ring copied out across its wrap and from a second ring (three
    intermediates with two originals), then random overlapping moves."""
    ops = ["ring 0 64", "ring 1 32"]
    pos = 0
    while pos < RING0:   # registered in chunks, as a stack receives
        n = draw(st.integers(1, 16)) * PAGE
        ops.append(f"reg 0 {pos} {min(n, RING0 - pos)}")
        pos += n
    ops += [f"reg 1 0 {RING1}", f"alloc 0 {BUF}"]
    boff = draw(st.integers(0, 8191))
    roff = draw(st.integers(RING0 - 160 * KIB, RING0 - 40 * KIB))
    l1 = RING0 - roff
    l2 = draw(st.integers(0, 100 * KIB))
    l3 = draw(st.integers(0, RING1 - 4096))
    r1off = draw(st.integers(0, RING1 - l3))
    ops.append(f"cpy 0 {roff} 0 {boff} {l1}")
    if l2:
        ops.append(f"cpy 0 0 0 {boff + l1} {l2}")      # the wrap
    if l3:
        ops.append(f"cpy 1 {r1off} 0 {boff + l1 + l2} {l3}")
    data = l1 + l2 + l3
    # prologue: the sdsrange move, which must be re-pointed
    ops.append(f"mov 0 {boff + 45} {boff} {data - 45}")
    for _ in range(draw(st.integers(1, 10))):
        shift = draw(st.one_of(st.sampled_from(SHIFTS), st.integers(-3 * PAGE, 3 * PAGE)))
        if shift == 0:
            continue
        n = draw(st.integers(16 * KIB, BUF - abs(shift)))
        soff = draw(st.integers(max(0, -shift), BUF - n - max(0, shift)))
        ops.append(f"mov 0 {soff} {soff + shift} {n}")
    ops.append(f"tryres 0 0 {BUF}")
    for _ in range(draw(st.integers(0, 3))):   # the stack's next laps
        r, size = draw(st.sampled_from([(0, RING0), (1, RING1)]))
        off = draw(st.integers(0, size // PAGE - 1)) * PAGE
        n = draw(st.integers(1, size // PAGE - off // PAGE)) * PAGE
        ops.append(f"lap {r} {off} {n} {draw(st.integers(0, 99))}")
    ops.append(f"rd 0 0 {BUF}")
    ops.append("free 0" if draw(st.booleans()) else f"ovr 0 0 {BUF} 1")
    ops += [f"try 0 0 {RING0}", f"try 1 0 {RING1}", "ctr release_fill_bytes"]
    return "\n".join(ops) + "\n"


@settings(max_examples=int(os.environ.get("ZIO_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=t1_scripts())
def test_t1_repointed_moves_equal_plain(script, tmp_path, libzio):
    log = run(script, tmp_path, libzio)
    moves = [tuple(map(int, m)) for m in lines(log, "mov")]
    assert moves[0][0] == 1, "the sdsrange move was not re-pointed"
    for repointed, faults in moves:
        assert not repointed or faults == 0, moves
    busy = lines(log, "tryres")[0]
    assert set(busy[:-2]) <= {"1"} and busy[-2:] == ["fill", "0"]
    laps = [tuple(map(int, x)) for x in lines(log, "lap")]
    assert all(fill == 0 for rc, fill in laps if rc == 0)
    # after the buffer was freed or overwritten nothing depends on the rings
    assert lines(log, "try") == [["0", "0"], ["0", "0"]]
    assert int(lines(log, "ctr")[0][1]) == sum(fill for _, fill in laps)


def test_tracked_pwrite_to_a_file_is_resolved(tmp_path, libzio):
    """With nothing interposed after libzio, a pwrite and a write of an
    elided copy go out as pwritev/writev of the ring pieces."""
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {BUF}
alloc 1 {BUF}
open {tmp_path}/out.bin
cpy 0 100 0 16 200000
pwr 0 16 200000 300000
cpy 0 100 0 16 200000
wrf 0 16 200000
prd 1 0 500000 0
rd 1 0 500000
ctr outputs_resolved
ctr outputs_materialized
"""
    log = run(script, tmp_path, libzio)
    assert lines(log, "ctr") == [["outputs_resolved", "2"], ["outputs_materialized", "0"]]


def defines(lib, symbol):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    return any(line.split()[-1] == symbol for line in out.splitlines() if line.strip())


def test_tracked_pwrite_and_write_reach_libstrata(tmp_path, libzio, strata_pool):
    """The issue's data loss: libzio rewrote a tracked pwrite into pwritev,
    which libstrata does not interpose, so glibc wrote to Strata's placeholder
    descriptor.  Now the rewrite happens only where the next shim sees it; the
    bytes written from an elided copy, and straight from an original, are
    stored and read back through libstrata as in the run without libzio."""
    libstrata = os.path.join(ROOT, "strata", "libstrata.so")
    script = f"""ring 0 64
reg 0 0 {RING0}
alloc 0 {BUF}
alloc 1 {BUF}
open /strata/orp-out.bin
cpy 0 100 0 16 200000
pwr 0 16 200000 300000
cpy 0 100 0 16 200000
wrf 0 16 200000
pwrring 0 0 {RING0} 600000
prd 1 0 {BUF} 200000
rd 1 0 {BUF}
ctr outputs_resolved
ctr outputs_materialized
"""
    log = run(script, tmp_path, libzio, after=libstrata,
              env_extra={"STRATA_POOL": strata_pool, "STRATA_MOUNT": "/strata"})
    ctr = {k: int(v) for k, v in lines(log, "ctr")}
    if defines(libstrata, "pwritev"):   # libstrata's own pwritev: both resolved
        assert ctr == {"outputs_resolved": 2, "outputs_materialized": 0}
    else:   # the pwrite goes on unchanged after materialising its buffer
        assert ctr == {"outputs_resolved": 1, "outputs_materialized": 1}


def stream_script(roff, boff, pieces, edits=()):
    """A stack copies ring 0 out piece by piece into contiguous buffer
    memory, as libtas does for a program reading a socket a few KiB at a
    time (zio_copy_continued with the run so far as prior); `edits` are
    (after piece k, buffer offset, length) program stores between pieces."""
    ops = ["ring 0 64", f"reg 0 0 {RING0}", f"alloc 0 {BUF}"]
    done = 0
    for k, n in enumerate(pieces):
        ops.append(f"scpy 0 {roff + done} 0 {boff + done} {n} {done}")
        done += n
        ops += [f"ovr 0 {off} {length} {k}" for after, off, length in edits if after == k]
    ops += [f"res 0 {boff} {done}", "ctr stream_bytes_adopted", "ctr copies_elided",
            f"rd 0 0 {BUF}"]
    return "\n".join(ops) + "\n", done


def test_stream_pieces_become_one_intermediate(tmp_path, libzio):
    """No piece of 1448 bytes covers a page, yet the pages they fill
    together resolve to the ring: the buffer holds a reference, not a copy."""
    script, done = stream_script(100, 57, [1448] * 150)
    log = run(script, tmp_path, libzio)
    ctr = {k: int(v) for k, v in lines(log, "ctr")}
    assert ctr["stream_bytes_adopted"] > 150 * KIB and ctr["copies_elided"] > 0
    ring = [p for p in lines(log, "res")[0][1:] if p.startswith("0:")]
    assert sum(int(p.split("+")[1]) for p in ring) >= done - 4 * PAGE


def test_stream_piece_changed_by_the_program_is_not_adopted(tmp_path, libzio):
    """A byte the program changed after its piece was copied keeps its new
    value: that page is not turned into a reference to the ring."""
    script, _ = stream_script(100, 57, [1448] * 60, edits=[(20, 57 + 20000, 3)])
    log = run(script, tmp_path, libzio)   # the bytes equal the plain run's
    assert int(dict(lines(log, "ctr"))["stream_bytes_adopted"]) > 0


@settings(max_examples=int(os.environ.get("ZIO_PROPERTY_EXAMPLES", "200")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(roff=st.integers(0, 8191), boff=st.integers(0, 8191),
       pieces=st.lists(st.integers(1, 40000), min_size=1, max_size=40),
       edits=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 240 * KIB), st.integers(1, 5000)),
                      max_size=4))
def test_stream_pieces_equal_plain(roff, boff, pieces, edits, tmp_path, libzio):
    total = 0
    kept = []
    for n in pieces:   # the ring holds RING0 bytes from roff on
        if roff + total + n > RING0:
            break
        kept.append(n)
        total += n
    if not kept:
        return
    script, _ = stream_script(roff, boff, kept, edits)
    run(script, tmp_path, libzio)


def test_stream_into_reused_buffer(tmp_path, libzio):
    """A stack's stream copies into a buffer whose last use held
    intermediates (freed and handed back by the allocator, untouched): the
    pieces are elided there again, the bytes copied plainly beside them (a
    short piece, the fringes) land on pages zero filled first, not faulted
    into the handler, and everything reads as in a plain run."""
    ops = ["ring 0 64", f"reg 0 0 {RING0}",
           f"alloc 1 {BUF}", "free 1",           # glibc: later buffers of this size on the heap
           f"alloc 0 {BUF}"]
    for lap, (roff, boff) in enumerate(((100, 57), (3000, 9000), (700, 20011))):
        done = 0
        for n in [1448] * 100:
            ops.append(f"scpy 0 {roff + done} 0 {boff + done} {n} {done}")
            done += n
        ops += [f"scpy 0 {roff + done + 5000} 0 {boff + done + 3000} 2000 0",   # short, plain
                f"rd 0 {boff + done + 3000} 2000"]
        if lap < 2:   # (reading the intermediates would fault them in: nothing left idle)
            ops += ["free 0", f"alloc 0 {BUF}"]
    ops += ["ctr idle_pages_zero_filled", "ctr faults_untracked", "ctr copies_elided",
            "ctr uffd_errors", f"rd 0 {boff} {done}",
            "free 0"]   # the final digest would read bytes never written (undefined)
    log = run("\n".join(ops) + "\n", tmp_path, libzio)
    ctr = {k: int(v) for k, v in lines(log, "ctr")}
    assert ctr["copies_elided"] > 0 and ctr["uffd_errors"] == 0
    assert ctr["idle_pages_zero_filled"] > 0, "nothing was written plainly onto idle pages"
    assert ctr["faults_untracked"] == 0
