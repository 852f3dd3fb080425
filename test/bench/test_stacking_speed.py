"""The bench's bookkeeping: the layer share fit and the per-epoch depths (no training here)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import stacking_speed  # noqa: E402

from espnet2_stacking.stacking import plan_stacking  # noqa: E402


def test_epoch_depths_weigh_a_growth_inside_an_epoch():
    plan = plan_stacking("interleaved", [2, 4, 6], schedule="prop:1", total_updates=12,
                         mode="l2l", targets=[3, 6], teacher_layers=6)
    assert list(plan.stage_lengths) == [2, 4, 6]
    # 3 epochs of 4 updates: [2, 2, 4, 4] [4, 4, 6, 6] [6, 6, 6, 6]
    assert stacking_speed.epoch_depths(plan, 3) == [3.0, 5.0, 6.0]


def test_layer_share_recovers_f_whatever_each_epoch_costs():
    f, full = 0.4, 6
    reference = [10.0, 14.0, 9.0, 20.0]  # epochs of different cost: different batches

    def run(depths):
        return {"epoch_depths": depths,
                "epoch_seconds": [ref * ((1 - f) + f * d / full) for ref, d in zip(reference, depths)]}

    runs = [run([2, 2, 4, 6]), run([2, 4, 6, 6]), run([3, 5, 6, 6])]
    assert stacking_speed.layer_share(runs, reference, full) == pytest.approx(f)
    # no epoch below full depth: nothing to fit
    assert math.isnan(stacking_speed.layer_share([run([6, 6, 6, 6])], reference, full))


def test_run_config_and_the_frozen_cnn_options():
    base = {"stacking_depths": [2, 4, 6]}
    plain = stacking_speed.run_config(base, "none", 300, 0, 6)
    assert plain["stacking_depths"] == [6] and "freeze_param" not in plain
    assert plain["num_iters_per_epoch"] == 50 and plain["max_epoch"] == 6
    stacked = stacking_speed.run_config(base, "interleaved_eql", 300, 0, 6)
    assert stacked["stacking_depths"] == [2, 4, 6] and "freeze_param" not in stacked
    with pytest.raises(SystemExit, match="multiple of --curve_points"):
        stacking_speed.run_config(base, "none", 301, 0, 6)

    splits = {"train": (Path("d/train"), Path("x/train")), "valid": (Path("d/dev"), Path("x/dev"))}
    dumped = stacking_speed.distill_args(splits, [3, 6], "dump", "t.pth", frozen_cnn=False)
    assert "x/dev/layer_6.scp,target_6,npy" in dumped and "--teacher" not in dumped
    assert "--freeze_param" not in dumped and "--init_from_teacher" not in dumped
    frozen = stacking_speed.distill_args(splits, [3, 6], "online", "t.pth", frozen_cnn=True)
    assert not any("layer_" in a for a in frozen)
    assert frozen[-6:] == ["--teacher", "t.pth", "--init_from_teacher", "t.pth", "--freeze_param", "frontend"]
    read = stacking_speed.distill_args(splits, [3, 6], "dump", "t.pth", frozen_cnn=True, reuse_cnn=True)
    assert "x/dev/cnn.scp,cnn_feats,npy" in read and read[-2:] == ["--teacher_cnn_features", "true"]
    # the online teacher's runs have no dump to read: they take the teacher's CNN output
    assert stacking_speed.distill_args(splits, [3, 6], "online", "t.pth", True, True) == frozen + [
        "--teacher_cnn_features", "true"]
    # and a trained CNN is never replaced by its dumped output
    assert stacking_speed.distill_args(splits, [3, 6], "dump", "t.pth", False, True) == dumped
