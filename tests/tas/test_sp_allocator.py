"""The payload-buffer allocator (tas/slowpath/appmem.py Allocator): page
rounding, first fit, exhaustion, and coalescing on release."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tas.slowpath.appmem import PAGE, Allocator

pytestmark = pytest.mark.fast

START, END = 16 * PAGE, 16 * PAGE + 64 * PAGE


def test_sizes_round_up_to_pages_and_first_fit_reuses_holes():
    a = Allocator(START, END)
    x = a.alloc(1)
    y = a.alloc(PAGE + 1)
    z = a.alloc(PAGE)
    assert (x, y, z) == (START, START + PAGE, START + 3 * PAGE)
    a.release(y)                          # a two-page hole before z
    assert a.alloc(PAGE) == START + PAGE  # first fit: the hole
    assert a.alloc(2 * PAGE) == START + 4 * PAGE  # the hole's rest is too small


def test_exhaustion_returns_none_and_release_makes_room():
    a = Allocator(START, END)
    offs = [a.alloc(8 * PAGE) for _ in range(8)]
    assert None not in offs and a.alloc(1) is None
    a.release(offs[3])
    assert a.alloc(8 * PAGE) == offs[3]


def test_released_neighbours_coalesce_into_one_range():
    a = Allocator(START, END)
    offs = [a.alloc(PAGE) for _ in range(4)]
    for off in (offs[0], offs[2], offs[1]):   # middle last: both sides merge
        a.release(off)
    assert a.free[0] == (START, 3 * PAGE)
    assert a.alloc(3 * PAGE) == START


def test_releasing_an_unknown_offset_is_an_error():
    a = Allocator(START, END)
    with pytest.raises(KeyError):
        a.release(START)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 20 * PAGE)), max_size=60))
def test_random_alloc_release_never_overlaps_and_frees_everything(ops):
    a = Allocator(START, END)
    live = {}
    for do_alloc, n in ops:
        if do_alloc or not live:
            off = a.alloc(n)
            if off is None:
                continue
            size = -(-n // PAGE) * PAGE
            assert START <= off and off + size <= END and off % PAGE == 0
            assert all(off + size <= o or o + s <= off for o, s in live.items())
            live[off] = size
        else:
            off = sorted(live)[n % len(live)]
            a.release(off)
            del live[off]
        assert sum(ln for _, ln in a.free) + sum(live.values()) == END - START
    for off in list(live):
        a.release(off)
    assert a.free == [(START, END - START)]
