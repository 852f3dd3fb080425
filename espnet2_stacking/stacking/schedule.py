"""Stage schedules: how many updates each stage (depth) gets.

B stages over T updates (METHOD.md section 6): ``eql`` T/B each; ``prop:<alpha>`` stage s
(1-based) gets T s^alpha / sum_k k^alpha; or explicit fractions "0.1,0.2,0.3,0.4". Boundaries
are the cumulative shares rounded half up, in exact rational arithmetic, so the stage lengths
sum to T exactly.
"""

from fractions import Fraction
from typing import List, Sequence, Union

from espnet2_stacking.stacking.errors import StackingConfigError

Schedule = Union[str, Sequence[float]]


def stage_fractions(schedule: Schedule, num_stages: int) -> List[Fraction]:
    """The share of the run each stage gets; they sum to 1."""
    if num_stages <= 0:
        raise StackingConfigError(f"need at least one stage, got {num_stages}")
    if isinstance(schedule, str) and schedule == "eql":
        return [Fraction(1, num_stages)] * num_stages
    if isinstance(schedule, str) and schedule.startswith("prop:"):
        try:
            alpha = Fraction(schedule[len("prop:"):])
        except ValueError:
            raise StackingConfigError(f"schedule '{schedule}': prop:<alpha> needs a number, e.g. prop:1")
        if alpha.denominator == 1:
            weights = [Fraction(s) ** int(alpha) for s in range(1, num_stages + 1)]
        else:
            weights = [Fraction(float(s) ** float(alpha)) for s in range(1, num_stages + 1)]
        total = sum(weights)
        return [w / total for w in weights]
    if isinstance(schedule, str):
        try:
            parts = [Fraction(p.strip()) for p in schedule.split(",") if p.strip()]
        except ValueError:
            raise StackingConfigError(
                f"schedule '{schedule}' is not eql, prop:<alpha> or comma-separated fractions"
            )
    else:
        parts = [Fraction(str(p)) for p in schedule]
    if len(parts) != num_stages:
        raise StackingConfigError(
            f"schedule {schedule!r} gives {len(parts)} fractions for {num_stages} stages"
        )
    if any(p <= 0 for p in parts):
        raise StackingConfigError(f"schedule {schedule!r}: every fraction must be positive")
    if abs(float(sum(parts)) - 1.0) > 1e-6:
        raise StackingConfigError(f"schedule {schedule!r}: fractions sum to {float(sum(parts))}, not 1")
    total = sum(parts)
    return [p / total for p in parts]


def stage_lengths(schedule: Schedule, total_updates: int, num_stages: int) -> List[int]:
    """Updates per stage; they sum to ``total_updates`` exactly and none is zero."""
    if total_updates <= 0:
        raise StackingConfigError(f"total_updates must be positive, got {total_updates}")
    fractions = stage_fractions(schedule, num_stages)
    cumulative = []
    acc = Fraction(0)
    for f in fractions:
        acc += f
        cumulative.append(int(acc * total_updates + Fraction(1, 2)))  # round half up
    cumulative[-1] = total_updates
    lengths = [b - a for a, b in zip([0] + cumulative[:-1], cumulative)]
    if any(n <= 0 for n in lengths):
        raise StackingConfigError(
            f"{total_updates} updates are too few for {num_stages} stages under {schedule!r} "
            f"(stage lengths {lengths})"
        )
    return lengths


def stage_boundaries(schedule: Schedule, total_updates: int, num_stages: int) -> List[int]:
    """The update count at which each growth happens (num_stages - 1 numbers)."""
    lengths = stage_lengths(schedule, total_updates, num_stages)
    out, acc = [], 0
    for n in lengths[:-1]:
        acc += n
        out.append(acc)
    return out
