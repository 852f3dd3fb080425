import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2_stacking.stacking import (
    StackingConfigError,
    default_targets,
    grow_lineage,
    growth_map,
    layer_pairs,
    plan_stacking,
)


def test_l2l_pairs_follow_the_groups():
    plan = plan_stacking("interleaved", [3, 6, 9, 12], targets=[4, 8, 12], mode="l2l")
    assert plan.pairs == {
        3: [(1, 4), (2, 8), (3, 12)],
        6: [(2, 4), (4, 8), (6, 12)],
        9: [(3, 4), (6, 8), (9, 12)],
        12: [(4, 4), (8, 8), (12, 12)],
    }
    assert [g.lineage for g in plan.growths][-1] == (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2)


def test_l2l_with_anchor_first_reads_the_last_layer_of_each_group():
    plan = plan_stacking("interleaved", [2, 5], teacher_layers=4, mode="l2l", anchor="first")
    # src [0,0,0,1,1] -> lineage [0,0,0,1,1]: group 0 ends at layer 3, group 1 at 5
    assert plan.growths[0].src == (0, 0, 0, 1, 1)
    assert plan.pairs[5] == [(3, 2), (5, 4)]


def test_l2l_reads_the_lineage_not_a_formula():
    # groups of unequal size: the last layer of group 0 is layer 0, of group 1 layer 3
    assert layer_pairs("l2l", [0, 1, 1, 1], [6, 12], 12) == [(1, 6), (4, 12)]


def test_pred_and_proportional():
    pred = plan_stacking("gradual", [3, 6], mode="pred", targets=[4, 8, 12])
    assert pred.pairs == {3: [(3, 4), (3, 8), (3, 12)], 6: [(6, 4), (6, 8), (6, 12)]}
    prop = plan_stacking("midas", [3, 6, 9], mode="l2l_proportional", targets=[0, 4, 8, 12])
    assert prop.pairs[3] == [(0, 0), (1, 4), (2, 8), (3, 12)]
    assert prop.pairs[6] == [(0, 0), (2, 4), (4, 8), (6, 12)]
    assert prop.pairs[9] == [(0, 0), (3, 4), (6, 8), (9, 12)]
    # 0.5 -> 1, 1.5 -> 2: halves round up
    assert layer_pairs("l2l_proportional", [0] * 2, [3, 9], 12) == [(1, 3), (2, 9)]
    assert layer_pairs("l2l_proportional", [0] * 5, [1, 5, 7], 12) == [(0, 1), (2, 5), (3, 7)]


def test_default_targets_and_none():
    assert plan_stacking("interleaved", [3, 6]).targets == (4, 8, 12)
    assert default_targets(4, 12) == [3, 6, 9, 12]
    assert plan_stacking("stackbert", [2, 4], mode="pred", teacher_layers=8).targets == (4, 8)
    full = plan_stacking("none", [12], mode="l2l_proportional", targets=[4, 8, 12])
    assert full.growths == () and full.pairs == {12: [(4, 4), (8, 8), (12, 12)]}
    l2l = plan_stacking("none", [4], mode="l2l", teacher_layers=8)
    assert l2l.pairs == {4: [(1, 2), (2, 4), (3, 6), (4, 8)]}


def test_midas_block_size_defaults_to_the_first_depth():
    plan = plan_stacking("midas", [3, 6, 9, 12], mode="pred")
    assert [g.src for g in plan.growths] == [
        (0, 1, 2, 0, 1, 2), (0, 1, 2, 0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8),
    ]
    assert plan.growths[-1].lineage == (0, 1, 2) * 4


L2L_REFUSAL = ("l2l keeps each teacher target on one lineage group, but {} moves layers to new "
               "depths so groups stop being contiguous; use --mode pred or --mode l2l_proportional")


@pytest.mark.parametrize("method", ["gradual", "stackbert", "midas"])
def test_l2l_is_refused_for_methods_that_move_layers(method):
    with pytest.raises(StackingConfigError) as err:
        plan_stacking(method, [3, 6], mode="l2l")
    assert str(err.value) == L2L_REFUSAL.format(method)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="interleaved", depths=[3, 6], targets=[4, 8, 13]),
         "target 13 is not a hidden state of a 12-layer"),
        (dict(method="interleaved", depths=[3, 6], targets=[-1, 8, 12]), "target -1 is not"),
        (dict(method="interleaved", depths=[3, 6], targets=[8, 4, 12]),
         "target 4 follows 8.*12-layer teacher must be strictly increasing"),
        (dict(method="interleaved", depths=[3, 6], targets=[4, 12]), "give 3 targets"),
        (dict(method="interleaved", depths=[3, 6], targets=[]), "no teacher targets"),
        (dict(method="interleaved", depths=[6, 3]), "strictly increasing"),
        (dict(method="interleaved", depths=[3, 3]), "strictly increasing"),
        (dict(method="interleaved", depths=[0, 3]), "positive integers"),
        (dict(method="interleaved", depths=[3, 6.5]), "positive integers"),
        (dict(method="interleaved", depths=[]), "no depths"),
        (dict(method="interleaved", depths=[5, 10]), "not a multiple.*--targets"),
        (dict(method="interleaved", depths=[3, 6], teacher_layers=0), "teacher_layers"),
        (dict(method="interleaved", depths=[3, 6], anchor="mid"), "anchor"),
        (dict(method="interleaved", depths=[3, 6], mode="nearest"), "unknown alignment mode"),
        (dict(method="none", depths=[3, 6]), "one depth"),
        (dict(method="bogus", depths=[3]), "unknown stacking method"),
        (dict(method="interleaved", depths=[3, 6], schedule="0.5,0.6"), "sum to"),
        (dict(method="interleaved", depths=[3, 6], total_updates=1), "too few"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs, match):
    method = kwargs.pop("method")
    depths = kwargs.pop("depths")
    with pytest.raises(StackingConfigError, match=match) as err:
        plan_stacking(method, depths, **kwargs)
    assert "\n" not in str(err.value)


def test_schedule_in_the_plan():
    plan = plan_stacking("interleaved", [3, 6, 9, 12], schedule="prop:1", total_updates=1000)
    assert plan.stage_lengths == (100, 200, 300, 400) and plan.boundaries == (100, 300, 600)
    eql = plan_stacking("interleaved", [3, 6, 9, 12], total_updates=1000)
    assert eql.stage_lengths == (250, 250, 250, 250) and eql.boundaries == (250, 500, 750)
    assert plan_stacking("interleaved", [3, 6]).boundaries is None


def test_depth_at_follows_the_boundaries():
    plan = plan_stacking("interleaved", [3, 6, 9, 12], schedule="prop:1", total_updates=1000)
    assert [plan.depth_at(u) for u in (0, 99, 100, 299, 300, 600, 1000)] == [3, 3, 6, 6, 9, 12, 12]
    assert plan.growth_from(6).to_depth == 9
    with pytest.raises(StackingConfigError, match="no growth from depth 12"):
        plan.growth_from(12)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.integers(1, 13), min_size=1, max_size=4),
    st.sampled_from(["last", "first"]),
    st.data(),
)
def test_l2l_states_increase_across_groups_and_end_at_the_top(k, increments, anchor, data):
    depths = [k]
    for inc in increments:
        depths.append(depths[-1] + inc)
    teacher = data.draw(st.integers(k, 30))
    targets = sorted(data.draw(st.sets(st.integers(0, teacher), min_size=k, max_size=k)))
    plan = plan_stacking("interleaved", depths, anchor=anchor, teacher_layers=teacher,
                         targets=targets, mode="l2l")
    lineage = list(range(k))
    for d in depths:
        if d != k:
            src = growth_map("interleaved", len(lineage), d, anchor=anchor, lineage=lineage)
            lineage = grow_lineage(lineage, src)
        states = [s for s, _ in plan.pairs[d]]
        assert [t for _, t in plan.pairs[d]] == targets
        assert all(a < b for a, b in zip(states, states[1:])) and states[-1] == d
        for g, s in enumerate(states):  # s is one past the last layer of group g
            assert lineage[s - 1] == g and (s == d or lineage[s] == g + 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.data())
def test_proportional_and_pred_states(depth, teacher, data):
    targets = sorted(data.draw(st.sets(st.integers(0, teacher), min_size=1, max_size=teacher + 1)))
    prop = layer_pairs("l2l_proportional", [0] * depth, targets, teacher)
    for s, t in prop:
        assert 0 <= s <= depth and abs(2 * s * teacher - 2 * t * depth) <= teacher  # nearest
    states = [s for s, _ in prop]
    assert states == sorted(states)
    if teacher in targets:
        assert prop[-1] == (depth, teacher)
    assert layer_pairs("pred", [0] * depth, targets, teacher) == [(depth, t) for t in targets]


def test_the_stacking_package_imports_neither_torch_nor_espnet():
    code = (
        "import sys, espnet2_stacking.stacking, espnet2_stacking.bin.stack_plan; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet', 'espnet2')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
