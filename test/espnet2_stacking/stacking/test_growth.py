import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2_stacking.stacking import (
    METHODS, StackingConfigError, check_growth, grow_lineage, growth_map, is_contiguous,
)

# Worked examples: METHOD.md section 3, and the block formulas worked by hand.
TABLE = [
    ("interleaved", "last", None, 3, 6, [0, 0, 1, 1, 2, 2]),
    ("interleaved", "last", None, 6, 9, [0, 1, 1, 2, 3, 3, 4, 5, 5]),
    ("interleaved", "last", None, 9, 12, [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8]),
    ("interleaved", "first", None, 6, 9, [0, 0, 1, 2, 2, 3, 4, 4, 5]),
    ("interleaved", "last", None, 2, 7, [0, 0, 0, 1, 1, 1, 1]),  # d' > 2d
    ("interleaved", "first", None, 4, 8, [0, 0, 1, 1, 2, 2, 3, 3]),  # d -> 2d: floor(i / 2)
    ("stackbert", "last", None, 3, 6, [0, 1, 2, 0, 1, 2]),  # A B C A B C
    ("gradual", "last", None, 3, 6, [0, 1, 2, 0, 1, 2]),
    ("gradual", "last", None, 6, 9, [0, 1, 2, 3, 4, 5, 3, 4, 5]),
    ("gradual", "last", None, 9, 12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8]),
    ("gradual", "last", None, 4, 5, [0, 1, 2, 3, 3]),
    # MIDAS, D = 3: n = d / D blocks, block m = ceil(n / 2) copied right after itself
    ("midas", "last", 3, 3, 6, [0, 1, 2, 0, 1, 2]),                          # n=1, m=1
    ("midas", "last", 3, 6, 9, [0, 1, 2, 0, 1, 2, 3, 4, 5]),                 # n=2, m=1
    ("midas", "last", 3, 9, 12, [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8]),       # n=3, m=2
    ("midas", "last", 2, 8, 10, [0, 1, 2, 3, 2, 3, 4, 5, 6, 7]),             # n=4, m=2
    ("midas", "last", 3, 8, 10, [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]),             # not aligned: centred
]


@pytest.mark.parametrize("method,anchor,block,d,d_new,expected", TABLE)
def test_worked_examples(method, anchor, block, d, d_new, expected):
    assert growth_map(method, d, d_new, anchor=anchor, block_size=block) == expected


def test_interleaved_lineage_through_all_stages():
    lineage = [0, 1, 2]
    for d, d_new in ((3, 6), (6, 9), (9, 12)):
        lineage = grow_lineage(lineage, growth_map("interleaved", d, d_new))
    assert lineage == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_closed_forms():
    for d in range(1, 12):
        for d_new in range(d + 1, 30):
            last = growth_map("interleaved", d, d_new, anchor="last")
            first = growth_map("interleaved", d, d_new, anchor="first")
            for i in range(d_new):
                assert last[i] == -(-(i + 1) * d // d_new) - 1
                assert first[i] == (i * d) // d_new


@pytest.mark.parametrize(
    "args,match",
    [
        (("none", 3, 6), "never grows"),
        (("interleaved", 6, 6), "greater depth"),
        (("interleaved", 0, 3), "greater depth"),
        (("bogus", 3, 6), "unknown stacking method"),
        (("midas", 3, 6), "block size"),
    ],
)
def test_refused_growths(args, match):
    with pytest.raises(StackingConfigError, match=match):
        growth_map(*args)


def test_invariant_checks_catch_broken_maps():
    with pytest.raises(StackingConfigError, match="not used"):
        check_growth("interleaved", 3, [0, 0, 1, 1, 1, 1])
    with pytest.raises(StackingConfigError, match="non-decreasing"):
        check_growth("interleaved", 3, [0, 1, 0, 1, 2, 2])
    with pytest.raises(StackingConfigError, match="contiguous"):
        check_growth("interleaved", 2, [0, 0, 1, 1], lineage=[0, 1, 0, 1])
    with pytest.raises(StackingConfigError, match="bottom"):
        check_growth("gradual", 3, [0, 2, 1, 0, 1, 2])
    with pytest.raises(StackingConfigError, match="out of range"):
        check_growth("stackbert", 2, [0, 1, 2, 0])


growth_sequences = st.tuples(
    st.sampled_from([m for m in METHODS if m != "none"]),
    st.sampled_from(["last", "first"]),
    st.integers(1, 4),  # block size
    st.integers(1, 6),  # initial depth
    st.lists(st.integers(1, 9), min_size=1, max_size=4),  # increments
)


@settings(max_examples=300, deadline=None)
@given(growth_sequences)
def test_random_growth_sequences_keep_every_invariant(case):
    method, anchor, block, depth, increments = case
    lineage = list(range(depth))
    for inc in increments:
        d_new = depth + inc
        src = growth_map(method, depth, d_new, anchor=anchor, block_size=block)
        assert len(src) == d_new
        assert set(src) == set(range(depth))  # every old layer used
        lineage = grow_lineage(lineage, src)
        assert len(lineage) == d_new
        assert set(lineage) == set(range(len(set(lineage))))
        if method == "interleaved":
            assert src == sorted(src)
            assert is_contiguous(lineage)
            assert lineage[0] == 0 and lineage[-1] == max(lineage)
        if method == "gradual":
            assert src[:depth] == list(range(depth))
        if method == "stackbert":
            assert src == [i % depth for i in range(d_new)]
        depth = d_new
