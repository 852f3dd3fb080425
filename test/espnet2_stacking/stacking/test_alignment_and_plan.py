import subprocess
import sys

import pytest

from espnet2_stacking.stacking import StackingConfigError, layer_pairs, plan_stacking


def test_l2l_pairs_follow_the_groups():
    plan = plan_stacking("interleaved", [3, 6, 9, 12], targets=[4, 8, 12], mode="l2l")
    assert plan.pairs == {
        3: [(1, 4), (2, 8), (3, 12)],
        6: [(2, 4), (4, 8), (6, 12)],
        9: [(3, 4), (6, 8), (9, 12)],
        12: [(4, 4), (8, 8), (12, 12)],
    }


def test_l2l_with_anchor_first_reads_the_last_layer_of_each_group():
    plan = plan_stacking("interleaved", [2, 5], teacher_layers=4, mode="l2l", anchor="first")
    # src [0,0,0,1,1] -> lineage [0,0,0,1,1]: group 0 ends at layer 3, group 1 at 5
    assert plan.pairs[5] == [(3, 2), (5, 4)]


def test_pred_and_proportional():
    pred = plan_stacking("gradual", [3, 6], mode="pred", targets=[4, 8, 12])
    assert pred.pairs[6] == [(6, 4), (6, 8), (6, 12)]
    prop = plan_stacking("midas", [3, 6, 9], mode="l2l_proportional", targets=[0, 4, 8, 12])
    assert prop.pairs[3] == [(0, 0), (1, 4), (2, 8), (3, 12)]
    assert prop.pairs[9] == [(0, 0), (3, 4), (6, 8), (9, 12)]
    assert layer_pairs("l2l_proportional", [0] * 2, [3, 9], 12) == [(1, 3), (2, 9)]  # 0.5 -> 1, 1.5 -> 2


def test_default_targets_and_none():
    assert plan_stacking("interleaved", [3, 6]).targets == (4, 8, 12)
    full = plan_stacking("none", [12], mode="l2l_proportional", targets=[4, 8, 12])
    assert full.growths == () and full.pairs == {12: [(4, 4), (8, 8), (12, 12)]}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="gradual", depths=[3, 6], mode="l2l"), "use --mode pred"),
        (dict(method="stackbert", depths=[3, 6], mode="l2l"), "moves layers"),
        (dict(method="interleaved", depths=[3, 6], targets=[4, 8, 13]), "not a hidden state of a 12-layer"),
        (dict(method="interleaved", depths=[3, 6], targets=[8, 4, 12]), "strictly increasing"),
        (dict(method="interleaved", depths=[3, 6], targets=[4, 12]), "give 3 targets"),
        (dict(method="interleaved", depths=[6, 3]), "strictly increasing"),
        (dict(method="interleaved", depths=[5, 10]), "not a multiple"),
        (dict(method="none", depths=[3, 6]), "one depth"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs, match):
    method = kwargs.pop("method")
    depths = kwargs.pop("depths")
    with pytest.raises(StackingConfigError, match=match):
        plan_stacking(method, depths, **kwargs)


def test_depth_at_follows_the_boundaries():
    plan = plan_stacking("interleaved", [3, 6, 9, 12], schedule="prop:1", total_updates=1000)
    assert [plan.depth_at(u) for u in (0, 99, 100, 299, 300, 600, 1000)] == [3, 3, 6, 6, 9, 12, 12]
    assert plan.growth_from(6).to_depth == 9


def test_the_stacking_package_imports_neither_torch_nor_espnet():
    code = (
        "import sys, espnet2_stacking.stacking, espnet2_stacking.bin.stack_plan; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet', 'espnet2')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
