"""The distillation config's own keys, resolved without importing ESPnet or torch.

``stacking_conf`` holds ``plan_stacking``'s keyword arguments; ``stack_plan --config`` and
``dump_teacher_feats --distill_config`` read a config through :func:`read_distill_config`, the
task (``DistillTask``) through the same functions, so all three agree on the plan.
"""

from typing import List, Optional

import yaml

from espnet2_stacking.core.text import int_list
from espnet2_stacking.stacking import StackingConfigError

STUDENT_CNN = ("trained", "teacher_init", "teacher_frozen")
# stacking_conf keys (plan_stacking's arguments) and this task's defaults for them
STACKING_DEFAULTS = dict(method="interleaved", depths=[3, 6, 9, 12], targets=[4, 8, 12], mode="l2l",
                         schedule="eql", anchor="last", block_size=None)
# options of earlier versions -> what replaces them (refused with this message)
RENAMED = {
    "stacking_method": "stacking_conf.method",
    "stacking_depths": "stacking_conf.depths",
    "stacking_anchor": "stacking_conf.anchor",
    "stacking_block_size": "stacking_conf.block_size",
    "stacking_schedule": "stacking_conf.schedule",
    "alignment_mode": "stacking_conf.mode",
    "target_layers": "stacking_conf.targets",
    "init_from_teacher": "student_cnn (teacher_init or teacher_frozen; the teacher is --teacher "
                         "or the dump's)",
    "teacher_cnn_features": "student_cnn teacher_frozen (with --train_dump_dir/--valid_dump_dir, "
                            "or an online --teacher)",
}


def refuse_renamed(names: List[str], where: str = "") -> None:
    """Options of earlier versions fail with the name of what replaced them."""
    if names:
        raise StackingConfigError(where + "; ".join(
            f"--{name} ({name}: in a config) was replaced by {RENAMED[name]}" for name in names))


def stacking_kwargs(stacking_conf: dict) -> dict:
    """stacking_conf over the defaults, lists parsed: plan_stacking's keyword arguments."""
    unknown = sorted(set(stacking_conf) - set(STACKING_DEFAULTS))
    if unknown:
        raise StackingConfigError(
            f"stacking_conf: unknown key(s) {unknown}; known: {sorted(STACKING_DEFAULTS)}")
    conf = {**STACKING_DEFAULTS, **stacking_conf}
    for key in ("depths", "targets"):
        if conf[key] is not None:
            conf[key] = int_list(conf[key])
    return conf


def read_distill_config(path) -> dict:
    """A distillation YAML as a dict, with ``stacking_conf`` resolved over the defaults; options
    of earlier versions are refused naming the file (for tools that read the config: the dump,
    stack_plan)."""
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    refuse_renamed([name for name in RENAMED if name in conf], where=f"{path}: ")
    conf["stacking_conf"] = stacking_kwargs(conf.get("stacking_conf") or {})
    return conf


def count_total_updates(total_updates: Optional[int], max_epoch: int,
                        num_iters_per_epoch: Optional[int], accum_grad: int = 1) -> int:
    """Updates of the whole run: ``total_updates`` when given, else what ESPnet performs.

    ESPnet steps once every ``accum_grad`` batches and starts that count afresh each epoch, so
    an epoch of ``num_iters_per_epoch`` batches makes ``num_iters_per_epoch // accum_grad``
    updates (the remainder accumulates a gradient that is never applied).
    """
    if total_updates is not None:
        return total_updates
    if num_iters_per_epoch is None:
        raise StackingConfigError(
            "DistillTask measures stages in updates: give --num_iters_per_epoch (or "
            "--total_updates) so the run's length is known before it starts"
        )
    if num_iters_per_epoch < accum_grad:
        raise StackingConfigError(
            f"num_iters_per_epoch={num_iters_per_epoch} is less than accum_grad={accum_grad}: "
            "no epoch would make an update")
    return max_epoch * (num_iters_per_epoch // accum_grad)
