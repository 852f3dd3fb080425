"""The optimizer-rule sweep's run configs (no training here)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import optimizer_rules  # noqa: E402

from espnet2_stacking.stacking import StackingConfigError  # noqa: E402


def test_rule_config_sets_the_rule_lr_and_beta2_and_keeps_the_rest():
    base = {"stacking_conf": {"depths": [2, 4, 6], "targets": [3, 6]}, "optimizer_state_rule": "copy",
            "optim_conf": {"lr": 2.0e-3, "weight_decay": 1.0e-4, "betas": [0.8, 0.999]}}
    conf = optimizer_rules.rule_config(base, "interleaved_eql", "reset_all", 300, 4.0e-3, 0.98, 0, 6)
    assert conf["optimizer_state_rule"] == "reset_all"
    assert conf["optim_conf"] == {"lr": 4.0e-3, "weight_decay": 1.0e-4, "betas": [0.8, 0.98]}
    stacking = conf["stacking_conf"]
    assert stacking["depths"] == [2, 4, 6] and stacking["targets"] == [3, 6]
    assert (stacking["method"], stacking["schedule"], stacking["mode"]) == ("interleaved", "eql", "l2l")
    assert conf["num_iters_per_epoch"] * conf["max_epoch"] == 300
    # the base is not changed, and `none` (rule None) keeps the base's rule at full depth
    assert base["optim_conf"]["lr"] == 2.0e-3 and base["optimizer_state_rule"] == "copy"
    assert base["stacking_conf"] == {"depths": [2, 4, 6], "targets": [3, 6]}
    plain = optimizer_rules.rule_config(base, "none", None, 300, 2.0e-3, 0.999, 0, 6)
    assert plain["optimizer_state_rule"] == "copy"
    assert plain["stacking_conf"]["depths"] == [6] and plain["stacking_conf"]["method"] == "none"
    # a base without betas gets AdamW's beta1
    conf = optimizer_rules.rule_config({"stacking_conf": {"depths": [2, 4]}, "optim_conf": {"lr": 1.0e-3}},
                                       "interleaved_eql", "copy", 10, 1.0e-3, 0.98, 0, 1)
    assert conf["optim_conf"]["betas"] == [0.9, 0.98]
    # a base in the options of earlier versions fails naming the new key
    with pytest.raises(StackingConfigError, match="stacking_conf.depths"):
        optimizer_rules.rule_config({"stacking_depths": [2, 4], "optim_conf": {"lr": 1.0e-3}},
                                    "interleaved_eql", "copy", 10, 1.0e-3, 0.98, 0, 1)
