import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2_stacking.stacking import (
    METHODS,
    StackingConfigError,
    check_growth,
    check_lineage,
    grow_lineage,
    growth_map,
    is_contiguous,
)
from espnet2_stacking.stacking.growth import midas_start

# Worked examples: docs/method.md section 3, and the block / centring formulas worked by hand.
TABLE = [
    ("interleaved", "last", None, 3, 6, [0, 0, 1, 1, 2, 2]),
    ("interleaved", "last", None, 6, 9, [0, 1, 1, 2, 3, 3, 4, 5, 5]),
    ("interleaved", "last", None, 9, 12, [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8]),
    ("interleaved", "first", None, 3, 6, [0, 0, 1, 1, 2, 2]),
    ("interleaved", "first", None, 6, 9, [0, 0, 1, 2, 2, 3, 4, 4, 5]),
    ("interleaved", "first", None, 9, 12, [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8]),
    ("interleaved", "last", None, 2, 7, [0, 0, 0, 1, 1, 1, 1]),  # d' > 2d
    ("interleaved", "first", None, 2, 7, [0, 0, 0, 0, 1, 1, 1]),
    ("interleaved", "first", None, 4, 8, [0, 0, 1, 1, 2, 2, 3, 3]),  # d -> 2d: floor(i / 2)
    ("interleaved", "last", None, 4, 8, [0, 0, 1, 1, 2, 2, 3, 3]),
    ("stackbert", "last", None, 3, 6, [0, 1, 2, 0, 1, 2]),  # A B C A B C
    ("stackbert", "last", None, 3, 5, [0, 1, 2, 0, 1]),  # d' < 2d: i mod d
    ("stackbert", "last", None, 2, 7, [0, 1, 0, 1, 0, 1, 0]),  # d' > 2d: i mod d
    # gradual: top G layers on top; G > d: top G of the stack repeated
    ("gradual", "last", None, 3, 6, [0, 1, 2, 0, 1, 2]),
    ("gradual", "last", None, 6, 9, [0, 1, 2, 3, 4, 5, 3, 4, 5]),
    ("gradual", "last", None, 9, 12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8]),
    ("gradual", "last", None, 4, 5, [0, 1, 2, 3, 3]),
    ("gradual", "last", None, 2, 6, [0, 1, 0, 1, 0, 1]),
    ("gradual", "last", None, 3, 7, [0, 1, 2, 2, 0, 1, 2]),
    # MIDAS, D = 3: n = d / D blocks, block m = ceil(n / 2) copied right after itself
    ("midas", "last", 3, 3, 6, [0, 1, 2, 0, 1, 2]),                          # n=1, m=1
    ("midas", "last", 3, 6, 9, [0, 1, 2, 0, 1, 2, 3, 4, 5]),                 # n=2, m=1
    ("midas", "last", 3, 9, 12, [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8]),       # n=3, m=2
    ("midas", "last", 3, 12, 15, [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10, 11]),  # n=4, m=2
    ("midas", "last", 2, 8, 10, [0, 1, 2, 3, 2, 3, 4, 5, 6, 7]),             # n=4, m=2
    ("midas", "last", 1, 5, 6, [0, 1, 2, 2, 3, 4]),                          # n=5, m=3
    # not block aligned: the G layers starting at (d - G) // 2
    ("midas", "last", 3, 8, 10, [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]),             # G=2, start 3
    ("midas", "last", 3, 7, 10, [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]),             # d % D != 0, start 2
    ("midas", "last", 3, 12, 18, [0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    # G > d: double first ([0,1,2,0,1,2]), then 6 -> 8 copies layers 2,3 (= 2, 0)
    ("midas", "last", 3, 3, 8, [0, 1, 2, 0, 2, 0, 1, 2]),
]


@pytest.mark.parametrize("method,anchor,block,d,d_new,expected", TABLE)
def test_worked_examples(method, anchor, block, d, d_new, expected):
    assert growth_map(method, d, d_new, anchor=anchor, block_size=block) == expected


@pytest.mark.parametrize(
    "method,block,stages,lineage",
    [
        ("interleaved", None, [3, 6, 9, 12], [0] * 4 + [1] * 4 + [2] * 4),  # AAAA BBBB CCCC
        ("stackbert", None, [3, 6, 12], [0, 1, 2] * 4),
        ("gradual", None, [3, 6, 9, 12], [0, 1, 2] * 4),
        ("midas", 3, [3, 6, 9, 12], [0, 1, 2] * 4),
        ("midas", 2, [4, 6, 8], [0, 1, 0, 1, 0, 1, 2, 3]),  # 4->6 copies block 1, 6->8 block 2
    ],
)
def test_lineage_through_all_stages(method, block, stages, lineage):
    current = list(range(stages[0]))
    for d, d_new in zip(stages, stages[1:]):
        current = grow_lineage(current, growth_map(method, d, d_new, block_size=block))
    assert current == lineage


def test_closed_forms():
    for d in range(1, 12):
        for d_new in range(d + 1, 30):
            last = growth_map("interleaved", d, d_new, anchor="last")
            first = growth_map("interleaved", d, d_new, anchor="first")
            for i in range(d_new):
                assert last[i] == -(-(i + 1) * d // d_new) - 1
                assert first[i] == (i * d) // d_new


def test_midas_centring_agrees_with_the_block_formula_for_an_odd_number_of_blocks():
    for block in range(1, 6):
        for n in range(1, 10):
            m = -(-n // 2)
            assert midas_start(n * block, block, block) == (m - 1) * block
            if n % 2:
                assert (n * block - block) // 2 == (m - 1) * block


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        (("none", 3, 6), {}, "never grows"),
        (("interleaved", 6, 6), {}, "greater depth"),
        (("interleaved", 0, 3), {}, "old depth"),
        (("interleaved", 3, 6.0), {}, "new depth"),
        (("bogus", 3, 6), {}, "unknown stacking method"),
        (("midas", 3, 6), {}, "block size"),
        (("midas", 3, 6), {"block_size": 0}, "block size"),
        (("interleaved", 3, 6), {"anchor": "middle"}, "anchor"),
    ],
)
def test_refused_growths(args, kwargs, match):
    with pytest.raises(StackingConfigError, match=match):
        growth_map(*args, **kwargs)


def test_invariant_checks_catch_broken_maps():
    with pytest.raises(StackingConfigError, match="not used"):
        check_growth("interleaved", 3, 6, [0, 0, 1, 1, 1, 1])
    with pytest.raises(StackingConfigError, match="non-decreasing"):
        check_growth("interleaved", 3, 6, [0, 1, 0, 1, 2, 2])
    with pytest.raises(StackingConfigError, match="5 entries for 6 layers"):
        check_growth("interleaved", 3, 6, [0, 0, 1, 1, 2])
    with pytest.raises(StackingConfigError, match="bottom"):
        check_growth("gradual", 3, 6, [0, 2, 1, 0, 1, 2])
    with pytest.raises(StackingConfigError, match="out of range"):
        check_growth("stackbert", 2, 4, [0, 1, 2, 0])
    with pytest.raises(StackingConfigError, match="repeated"):
        check_growth("stackbert", 2, 4, [0, 1, 1, 0])
    with pytest.raises(StackingConfigError, match="in order"):
        check_growth("midas", 3, 4, [1, 0, 2, 2])
    with pytest.raises(StackingConfigError, match="not contiguous"):
        check_lineage("interleaved", [0, 1, 0], [0, 1, 2, 2], [0, 1, 0, 0])
    with pytest.raises(StackingConfigError, match="does not follow"):
        check_lineage("interleaved", [0, 1], [0, 0, 1, 1], [0, 1, 1, 1])
    with pytest.raises(StackingConfigError, match="3 entries for 4 layers"):
        check_lineage("gradual", [0, 1], [0, 1, 0, 1], [0, 1, 0])
    with pytest.raises(StackingConfigError, match="outside a stack of 2"):
        grow_lineage([0, 1], [0, 1, -1])
    check_lineage("stackbert", [0, 1], [0, 1, 0, 1], [0, 1, 0, 1])  # scrambled is fine there


growth_sequences = st.tuples(
    st.sampled_from([m for m in METHODS if m != "none"]),
    st.sampled_from(["last", "first"]),
    st.integers(1, 4),  # block size
    st.integers(1, 6),  # initial depth
    st.lists(st.integers(1, 13), min_size=1, max_size=4),  # increments, some > 2d
)


@settings(max_examples=400, deadline=None)
@given(growth_sequences)
def test_random_growth_sequences_keep_every_invariant(case):
    method, anchor, block, depth, increments = case
    initial = depth
    lineage = list(range(depth))
    for inc in increments:
        d_new = depth + inc
        src = growth_map(method, depth, d_new, anchor=anchor, block_size=block)
        assert len(src) == d_new
        assert all(0 <= j < depth for j in src)
        assert set(src) == set(range(depth))  # every old layer used
        new_lineage = grow_lineage(lineage, src)
        assert new_lineage == [lineage[j] for j in src]
        check_lineage(method, lineage, src, new_lineage)
        lineage = new_lineage
        assert len(lineage) == d_new and set(lineage) == set(range(initial))
        if method == "interleaved":
            assert src == sorted(src)
            assert is_contiguous(lineage)
            # each lineage value one run, runs in order: A..A B..B C..C
            runs = [g for i, g in enumerate(lineage) if i == 0 or lineage[i - 1] != g]
            assert runs == list(range(initial))
        if method == "gradual":
            assert src[:depth] == list(range(depth))
            assert src[depth:] == [(depth - inc + k) % depth for k in range(inc)]
            assert src[-1] == depth - 1  # the top stays the top
        if method == "stackbert":
            assert src == [i % depth for i in range(d_new)]
        if method == "midas" and inc <= depth:
            # one contiguous run [s, s + inc) copied right after itself
            s = next(i for i in range(depth) if src[i + inc:i + 2 * inc] == [*range(i, i + inc)])
            assert src == [*range(s + inc), *range(s, s + inc), *range(s + inc, depth)]
        depth = d_new
