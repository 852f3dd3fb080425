"""Stacking maths: growth maps, stage schedules and teacher alignment.

Pure Python over ints and lists: nothing here imports torch or ESPnet, so the plan of a run can
be checked (``python -m espnet2_stacking.bin.stack_plan``) before anything heavy is loaded.
"""

from espnet2_stacking.stacking.alignment import MODES, check_mode, default_targets, layer_pairs
from espnet2_stacking.stacking.errors import StackingConfigError
from espnet2_stacking.stacking.growth import (
    ANCHORS,
    METHODS,
    check_balance,
    check_growth,
    check_lineage,
    group_sizes,
    grow_lineage,
    growth_map,
    interleaved_growth,
    is_contiguous,
)
from espnet2_stacking.stacking.plan import Growth, StackingPlan, plan_stacking
from espnet2_stacking.stacking.schedule import stage_boundaries, stage_fractions, stage_lengths

__all__ = [
    "ANCHORS", "METHODS", "MODES", "Growth", "StackingConfigError", "StackingPlan",
    "check_balance", "check_growth", "check_lineage", "check_mode", "default_targets",
    "grow_lineage", "group_sizes", "growth_map", "interleaved_growth", "is_contiguous",
    "layer_pairs", "plan_stacking", "stage_boundaries", "stage_fractions", "stage_lengths",
]
