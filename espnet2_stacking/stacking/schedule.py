"""Stage schedules: how many updates each stage (depth) gets.

B stages over T updates (docs/method.md section 6): ``eql`` T/B each; ``prop:<alpha>`` stage s
(1-based) gets T s^alpha / sum_k k^alpha; or explicit fractions "0.1,0.2,0.3,0.4". Boundaries
are the cumulative shares rounded half up, in exact rational arithmetic, so the stage lengths
sum to T exactly.
"""

from fractions import Fraction
from typing import List, Sequence, Union

from espnet2_stacking.stacking.errors import StackingConfigError

Schedule = Union[str, Sequence[float]]


def _prop_weights(schedule: str, num_stages: int) -> List[Fraction]:
    """s^alpha for s = 1..B; exact for integer alpha, through floats otherwise."""
    try:
        alpha = Fraction(schedule[len("prop:"):])
    except ValueError:
        raise StackingConfigError(
            f"schedule '{schedule}': prop:<alpha> needs a number, e.g. prop:1"
        ) from None
    if abs(alpha) > 64:  # exact powers of a huge alpha would take forever; no use for them
        raise StackingConfigError(f"schedule '{schedule}': alpha must lie within -64..64")
    try:
        if alpha.denominator == 1:
            return [Fraction(s) ** int(alpha) for s in range(1, num_stages + 1)]
        return [Fraction(float(s) ** float(alpha)) for s in range(1, num_stages + 1)]
    except (OverflowError, ValueError):
        raise StackingConfigError(
            f"schedule '{schedule}': s^alpha overflows for {num_stages} stages"
        ) from None


def _explicit_fractions(schedule: Schedule) -> List[Fraction]:
    parts = schedule.split(",") if isinstance(schedule, str) else list(schedule)
    try:
        return [Fraction(p.strip()) if isinstance(p, str) else Fraction(str(p)) for p in parts]
    except ValueError:
        raise StackingConfigError(
            f"schedule {schedule!r} is not eql, prop:<alpha> or comma-separated fractions"
        ) from None


def stage_fractions(schedule: Schedule, num_stages: int) -> List[Fraction]:
    """The share of the run each stage gets; they sum to 1 exactly.

    Example:
        >>> [str(f) for f in stage_fractions("prop:1", 4)]
        ['1/10', '1/5', '3/10', '2/5']
    """
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages <= 0:
        raise StackingConfigError(f"need at least one stage, got {num_stages!r}")
    if schedule == "eql":
        return [Fraction(1, num_stages)] * num_stages
    if isinstance(schedule, str) and schedule.startswith("prop:"):
        weights = _prop_weights(schedule, num_stages)
        total = sum(weights)
        return [w / total for w in weights]
    parts = _explicit_fractions(schedule)
    if len(parts) != num_stages:
        raise StackingConfigError(
            f"schedule {schedule!r} gives {len(parts)} fractions for {num_stages} stages"
        )
    if any(p <= 0 for p in parts):
        raise StackingConfigError(f"schedule {schedule!r}: every fraction must be positive")
    total = sum(parts)
    if abs(total - 1) > Fraction(1, 10**6):
        raise StackingConfigError(
            f"schedule {schedule!r}: fractions sum to {float(total)}, not 1 (within 1e-6)"
        )
    return [p / total for p in parts]  # exactly 1 so the last boundary is the run's end


def stage_lengths(schedule: Schedule, total_updates: int, num_stages: int) -> List[int]:
    """Updates per stage; they sum to ``total_updates`` exactly and none is zero.

    Each cumulative boundary T * (f_1 + ... + f_s) is rounded half up on its own, so rounding
    never accumulates and no update is lost or added.

    Example:
        >>> stage_lengths("eql", 10, 3)
        [3, 4, 3]
    """
    if isinstance(total_updates, bool) or not isinstance(total_updates, int) or total_updates <= 0:
        raise StackingConfigError(
            f"total_updates must be a positive integer, got {total_updates!r}"
        )
    fractions = stage_fractions(schedule, num_stages)
    cumulative = []
    acc = Fraction(0)
    for f in fractions:
        acc += f
        cumulative.append(int(acc * total_updates + Fraction(1, 2)))  # round half up
    lengths = [b - a for a, b in zip([0] + cumulative[:-1], cumulative)]
    if any(n <= 0 for n in lengths):
        raise StackingConfigError(
            f"{total_updates} updates are too few for {num_stages} stages under {schedule!r} "
            f"(stage lengths {lengths})"
        )
    return lengths


def stage_boundaries(schedule: Schedule, total_updates: int, num_stages: int) -> List[int]:
    """The update count at which each growth happens (num_stages - 1 numbers).

    Example:
        >>> stage_boundaries("prop:1", 1000, 4)
        [100, 300, 600]
    """
    lengths = stage_lengths(schedule, total_updates, num_stages)
    out, acc = [], 0
    for n in lengths[:-1]:
        acc += n
        out.append(acc)
    return out
