"""A whole stacking run planned up front: growths, supervision pairs and stage boundaries."""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from espnet2_stacking.stacking.alignment import (
    Pairs,
    check_mode,
    check_targets,
    default_targets,
    layer_pairs,
)
from espnet2_stacking.stacking.errors import StackingConfigError
from espnet2_stacking.stacking.growth import (
    ANCHORS,
    METHODS,
    check_balance,
    check_int,
    check_lineage,
    grow_lineage,
    growth_map,
)
from espnet2_stacking.stacking.schedule import (
    Schedule,
    stage_boundaries,
    stage_fractions,
    stage_lengths,
)


@dataclass(frozen=True)
class Growth:
    """One growth: new layer i starts as a copy of old layer src[i]."""

    from_depth: int
    to_depth: int
    src: Tuple[int, ...]
    lineage: Tuple[int, ...]  # after the growth


@dataclass(frozen=True)
class StackingPlan:
    """Everything a run needs to know about its stages; ``pairs`` maps each depth to its
    (student hidden state, teacher hidden state) list; lengths and boundaries are None
    without ``total_updates``."""

    method: str
    depths: Tuple[int, ...]
    mode: str
    teacher_layers: int
    targets: Tuple[int, ...]
    growths: Tuple[Growth, ...]
    pairs: Dict[int, Pairs]
    total_updates: Optional[int]
    stage_lengths: Optional[Tuple[int, ...]]
    boundaries: Optional[Tuple[int, ...]]

    @property
    def teacher_states(self) -> List[int]:
        """The supervised teacher hidden states, ascending."""
        return sorted(self.targets)

    def depth_at(self, updates: int) -> int:
        """The depth after ``updates`` updates: one more stage per boundary reached."""
        if self.boundaries is None:
            raise StackingConfigError("the plan has no schedule: give total_updates")
        return self.depths[sum(1 for b in self.boundaries if updates >= b)]

    def growth_from(self, depth: int) -> Growth:
        for g in self.growths:
            if g.from_depth == depth:
                return g
        raise StackingConfigError(f"the plan {list(self.depths)} has no growth from depth {depth}")


def plan_stacking(method: str, depths: Sequence[int], *, anchor: str = "last",
                  block_size: Optional[int] = None, teacher_layers: int = 12,
                  targets: Optional[Sequence[int]] = None, mode: str = "l2l",
                  schedule: Schedule = "eql",
                  total_updates: Optional[int] = None) -> StackingPlan:
    """Check a stacking setting and work out every growth, pair and boundary.

    ``depths`` are the stage depths, strictly increasing; the last is the student's depth.
    ``block_size`` (MIDAS only) defaults to the first depth, as in the paper. ``targets`` are
    teacher hidden states (default (g + 1) L_T / K). Every mistake raises StackingConfigError.
    Interleaved growths follow the lineage, keeping its groups (one per initial layer) within
    one layer of each other at every depth, so the l2l pairs stay near t d / L_T.

    Example (docs/method.md):
        >>> p = plan_stacking("interleaved", [3, 6, 9, 12], targets=[4, 8, 12],
        ...                   schedule="prop:1", total_updates=1000)
        >>> p.growths[0].src, p.pairs[6], p.boundaries
        ((0, 0, 1, 1, 2, 2), [(2, 4), (4, 8), (6, 12)], (100, 300, 600))
    """
    if method not in METHODS:
        raise StackingConfigError(f"unknown stacking method '{method}'; one of {METHODS}")
    depths = list(depths)
    if not depths:
        raise StackingConfigError("no depths given: list the depth of each stage, e.g. 3,6,9,12")
    if any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in depths):
        raise StackingConfigError(f"depths must be positive integers, got {depths}")
    if any(a >= b for a, b in zip(depths, depths[1:])):
        raise StackingConfigError(f"depths must be strictly increasing, got {depths}")
    if method == "none" and len(depths) != 1:
        raise StackingConfigError(
            f"method 'none' trains one depth from the start; got depths {depths} (give one)"
        )
    if anchor not in ANCHORS:
        raise StackingConfigError(f"anchor must be one of {ANCHORS}, got '{anchor}'")
    check_int("teacher_layers", teacher_layers, 1)
    check_mode(method, mode)
    if method == "midas":
        block_size = depths[0] if block_size is None else block_size
        check_int("midas block size", block_size, 1)
    if targets is None:
        targets = default_targets(depths[0], teacher_layers)
    targets = list(targets)
    check_targets(targets, teacher_layers)

    lineage = list(range(depths[0]))
    pairs = {depths[0]: layer_pairs(mode, lineage, targets, teacher_layers)}
    growths = []
    for d, d_new in zip(depths, depths[1:]):
        src = growth_map(method, d, d_new, anchor=anchor, block_size=block_size,
                         lineage=lineage)
        new_lineage = grow_lineage(lineage, src)
        check_lineage(method, lineage, src, new_lineage)
        check_balance(method, d, d_new, new_lineage)
        lineage = new_lineage
        growths.append(Growth(d, d_new, tuple(src), tuple(lineage)))
        pairs[d_new] = layer_pairs(mode, lineage, targets, teacher_layers)

    stage_fractions(schedule, len(depths))  # a bad schedule fails now, not hours into a run
    lengths = boundaries = None
    if total_updates is not None:
        lengths = tuple(stage_lengths(schedule, total_updates, len(depths)))
        boundaries = tuple(stage_boundaries(schedule, total_updates, len(depths)))
    return StackingPlan(
        method=method, depths=tuple(depths), mode=mode, teacher_layers=teacher_layers,
        targets=tuple(targets), growths=tuple(growths), pairs=pairs,
        total_updates=total_updates, stage_lengths=lengths, boundaries=boundaries,
    )
