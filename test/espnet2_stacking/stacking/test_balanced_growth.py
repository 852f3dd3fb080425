"""Interleaved growth keeps the lineage groups balanced (review issue 20, item 1).

At every depth each initial layer's group holds floor(d / K) or ceil(d / K) layers, so the l2l
pairs (group g read at its last layer) stay near t d / L_T whatever the depths; growths in which
every group grows equally give the closed form of docs/method.md section 3 as before.
"""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2_stacking.stacking import (
    StackingConfigError,
    check_balance,
    group_sizes,
    growth_map,
    interleaved_growth,
    is_contiguous,
    plan_stacking,
)
from espnet2_stacking.stacking.growth import interleaved_map


def test_3_5_8_12_anchor_last_keeps_the_groups_balanced():
    plan = plan_stacking("interleaved", [3, 5, 8, 12], targets=[4, 8, 12], mode="l2l")
    assert [g.src for g in plan.growths] == [
        (0, 1, 1, 2, 2),                           # the closed form, as before
        (0, 0, 1, 2, 2, 3, 4, 4),                  # group 0 (1 layer) grows too, not group 2
        (0, 0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7),
    ]
    assert [g.lineage for g in plan.growths] == [
        (0, 1, 1, 2, 2),
        (0, 0, 1, 1, 1, 2, 2, 2),
        (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2),      # was 0,1,1,1,1,1,2,2,2,2,2,2
    ]
    assert [group_sizes(g.lineage) for g in plan.growths] == [[1, 2, 2], [2, 3, 3], [4, 4, 4]]
    assert plan.pairs == {
        3: [(1, 4), (2, 8), (3, 12)],
        5: [(1, 4), (3, 8), (5, 12)],
        8: [(2, 4), (5, 8), (8, 12)],
        12: [(4, 4), (8, 8), (12, 12)],            # t d / L_T; was (1, 4), (6, 8), (12, 12)
    }


def test_3_5_8_12_anchor_first_keeps_the_groups_balanced():
    plan = plan_stacking("interleaved", [3, 5, 8, 12], targets=[4, 8, 12], anchor="first")
    assert [g.src for g in plan.growths] == [
        (0, 0, 1, 1, 2),
        (0, 0, 1, 2, 2, 3, 4, 4),
        (0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 7),
    ]
    assert [group_sizes(g.lineage) for g in plan.growths] == [[2, 2, 1], [3, 3, 2], [4, 4, 4]]
    assert plan.pairs[8] == [(3, 4), (6, 8), (8, 12)]
    assert plan.pairs[12] == [(4, 4), (8, 8), (12, 12)]


def test_stack_plan_shows_the_balanced_growth(capsys):
    from espnet2_stacking.bin.stack_plan import main

    main(["--depths", "3,5,8,12", "--targets", "4,8,12", "--mode", "l2l"])
    out = json.loads(capsys.readouterr().out)
    assert out["growths"][-1]["lineage"] == [0] * 4 + [1] * 4 + [2] * 4
    assert out["pairs"]["12"] == [[4, 4], [8, 8], [12, 12]]


# Growths in which every group grows equally: the results of the closed form, unchanged.
EQUAL = [
    ("last", [3, 6, 9, 12], [[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 3, 3, 4, 5, 5],
                             [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8]]),
    ("first", [3, 6, 9, 12], [[0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 3, 4, 4, 5],
                              [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8]]),
    ("last", [2, 4, 6], [[0, 0, 1, 1], [0, 1, 1, 2, 3, 3]]),
    ("first", [2, 4, 6], [[0, 0, 1, 1], [0, 0, 1, 2, 2, 3]]),
    ("last", [3, 6, 12], [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]]),
    ("last", [1, 2, 4, 8], [[0, 0], [0, 0, 1, 1], [0, 0, 1, 1, 2, 2, 3, 3]]),
    ("first", [4, 8, 16], [[0, 0, 1, 1, 2, 2, 3, 3], [i // 2 for i in range(16)]]),
    ("last", [2, 7], [[0, 0, 0, 1, 1, 1, 1]]),  # one growth from the initial stack
    ("first", [2, 7], [[0, 0, 0, 0, 1, 1, 1]]),
    ("last", [1, 3, 5], [[0, 0, 0], [0, 1, 1, 2, 2]]),  # K = 1: one group, closed form
]


@pytest.mark.parametrize("anchor,depths,srcs", EQUAL)
def test_equal_growths_keep_the_closed_form(anchor, depths, srcs):
    plan = plan_stacking("interleaved", depths, anchor=anchor, mode="pred")
    assert [list(g.src) for g in plan.growths] == srcs
    for g in plan.growths:
        assert list(g.src) == interleaved_map(g.from_depth, g.to_depth, anchor)


def test_the_initial_stack_grows_by_the_closed_form():
    for d in range(1, 12):
        for d_new in range(d + 1, 30):
            for anchor in ("last", "first"):
                assert interleaved_growth(list(range(d)), d_new, anchor) == \
                    interleaved_map(d, d_new, anchor)
                assert growth_map("interleaved", d, d_new, anchor=anchor,
                                  lineage=list(range(d))) == interleaved_map(d, d_new, anchor)


def _sequences(k, top=16, growths=4):
    for n in range(growths + 1):
        for rest in itertools.combinations(range(k + 1, top + 1), n):
            yield [k, *rest]


@pytest.mark.parametrize("anchor", ["last", "first"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_every_small_plan_keeps_the_groups_balanced(k, anchor):
    """Exhaustive: K in 1..4, up to 4 growths, depths up to 16."""
    targets = [g + 1 for g in range(k)]
    for depths in _sequences(k):
        plan = plan_stacking("interleaved", depths, anchor=anchor, teacher_layers=k,
                             targets=targets, mode="l2l")
        lineage = list(range(k))
        old_equal = True  # every group the same size: the closed form applies as before
        for growth in plan.growths:
            d, d_new, src = growth.from_depth, growth.to_depth, list(growth.src)
            assert len(src) == d_new and src == sorted(src) and set(src) == set(range(d))
            new_lineage = [lineage[j] for j in src]
            assert list(growth.lineage) == new_lineage and is_contiguous(new_lineage)
            sizes = group_sizes(new_lineage)
            assert len(sizes) == k and max(sizes) - min(sizes) <= 1, (depths, new_lineage)
            assert sorted(set(sizes)) == sorted({d_new // k, -(-d_new // k)})
            for g in range(k):  # a group never shrinks and its layers only gain copies
                assert new_lineage.count(g) >= lineage.count(g)
            new_equal = d_new % k == 0
            if old_equal and new_equal:
                assert src == interleaved_map(d, d_new, anchor), depths
            if d == k:
                assert src == interleaved_map(d, d_new, anchor), depths
            assert growth_map("interleaved", d, d_new, anchor=anchor, lineage=lineage) == src
            lineage, old_equal = new_lineage, new_equal
        for d in plan.depths:  # each teacher state at the last layer of its group
            lin = list(range(k)) if d == k else list(plan.growth_from(
                plan.depths[plan.depths.index(d) - 1]).lineage)
            ends = [max(i for i, g in enumerate(lin) if g == grp) + 1 for grp in range(k)]
            assert plan.pairs[d] == list(zip(ends, targets))
            if d % k == 0:
                assert ends == [(g + 1) * d // k for g in range(k)]  # t d / L_T exactly


def test_a_growth_of_many_copies_per_group():
    # 2 -> 3 -> 8: each group more than doubles; the closed form within each group
    plan = plan_stacking("interleaved", [2, 3, 8], teacher_layers=8)
    assert plan.growths[1].src == (0, 0, 0, 0, 1, 1, 2, 2)
    assert group_sizes(plan.growths[1].lineage) == [4, 4]
    assert plan.pairs[8] == [(4, 4), (8, 8)]


def test_growth_map_lineage_is_checked():
    with pytest.raises(StackingConfigError, match="lineage of 3 layers for a growth from 4"):
        growth_map("interleaved", 4, 6, lineage=[0, 1, 2])
    with pytest.raises(StackingConfigError, match="not contiguous") as err:
        growth_map("interleaved", 3, 4, lineage=[0, 1, 0])
    assert "\n" not in str(err.value)
    # an uneven lineage (not one a plan makes) is evened out as far as the growth allows
    assert growth_map("interleaved", 4, 6, lineage=[0, 1, 1, 1]) == [0, 0, 0, 1, 2, 3]
    assert growth_map("interleaved", 5, 6, lineage=[0, 1, 1, 1, 1]) == [0, 0, 1, 2, 3, 4]
    # other methods do not depend on the lineage
    assert growth_map("stackbert", 3, 5, lineage=[0, 1, 1]) == [0, 1, 2, 0, 1]


def test_check_balance_names_the_depths():
    check_balance("interleaved", 3, 5, [0, 1, 1, 2, 2])
    check_balance("stackbert", 3, 5, [0, 1, 2, 0, 1])  # only interleaved keeps groups
    with pytest.raises(StackingConfigError) as err:
        check_balance("interleaved", 5, 8, [0, 1, 1, 1, 2, 2, 2, 2])
    msg = str(err.value)
    assert "\n" not in msg and "5 -> 8" in msg and "[1, 3, 4]" in msg


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), st.lists(st.integers(1, 20), min_size=1, max_size=5),
       st.sampled_from(["last", "first"]))
def test_deeper_random_plans_keep_the_groups_balanced(k, increments, anchor):
    depths = [k]
    for inc in increments:
        depths.append(depths[-1] + inc)
    plan = plan_stacking("interleaved", depths, anchor=anchor, teacher_layers=k,
                         targets=list(range(1, k + 1)), mode="l2l")
    for growth in plan.growths:
        sizes = group_sizes(growth.lineage)
        assert len(sizes) == k and max(sizes) - min(sizes) <= 1
        ends = list(itertools.accumulate(sizes))
        assert [s for s, _ in plan.pairs[growth.to_depth]] == ends
