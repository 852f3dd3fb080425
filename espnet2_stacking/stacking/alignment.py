"""Which student hidden state predicts which teacher hidden state, at each depth.

Hidden state 0 is the transformer input, k the output of layer k (student and teacher alike).
Modes (docs/method.md section 4):
- ``l2l``: one teacher target per initial layer (lineage group); group g is read at the
  output of its last layer, so the pairs follow the growth. Only interleaved stacking (and
  ``none``) keeps groups contiguous.
- ``pred``: DistilHuBERT-style heads, every target predicted from the last layer.
- ``l2l_proportional``: teacher t from student round_half_up(t d / L_T), recomputed at each
  depth (t = 0 maps to the input, state 0).
"""

from typing import List, Sequence, Tuple

from espnet2_stacking.stacking.errors import StackingConfigError

MODES = ("l2l", "pred", "l2l_proportional")
Pairs = List[Tuple[int, int]]


def check_mode(method: str, mode: str) -> None:
    """Refuse a mode the method cannot keep consistent across growths."""
    if mode not in MODES:
        raise StackingConfigError(f"unknown alignment mode '{mode}'; one of {MODES}")
    if mode == "l2l" and method in ("gradual", "stackbert", "midas"):
        raise StackingConfigError(
            f"l2l keeps each teacher target on one lineage group, but {method} moves layers to "
            "new depths so groups stop being contiguous; use --mode pred or --mode l2l_proportional"
        )


def default_targets(initial_depth: int, teacher_layers: int) -> List[int]:
    """t_g = (g + 1) L_T / K: one target per initial layer, evenly spaced up to the top.

    Example:
        >>> default_targets(3, 12)
        [4, 8, 12]
    """
    if teacher_layers % initial_depth:
        raise StackingConfigError(
            f"teacher depth {teacher_layers} is not a multiple of the initial depth "
            f"{initial_depth}: give the targets explicitly (--targets)"
        )
    step = teacher_layers // initial_depth
    return [(g + 1) * step for g in range(initial_depth)]


def check_targets(targets: Sequence[int], teacher_layers: int) -> None:
    """Targets are teacher hidden states 0..L_T, strictly increasing."""
    if not targets:
        raise StackingConfigError("no teacher targets given")
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= teacher_layers:
            raise StackingConfigError(
                f"target {t!r} is not a hidden state of a {teacher_layers}-layer teacher "
                f"(0..{teacher_layers})"
            )
    for a, b in zip(targets, targets[1:]):
        if a >= b:
            raise StackingConfigError(
                f"target {b} follows {a}: targets {list(targets)} of the {teacher_layers}-layer "
                "teacher must be strictly increasing"
            )


def _round_half_up(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


def layer_pairs(mode: str, lineage: Sequence[int], targets: Sequence[int],
                teacher_layers: int) -> Pairs:
    """(student state, teacher state) pairs at the depth len(lineage).

    ``l2l`` reads group g at 1 + the index of the last layer whose lineage is g, so it follows
    whatever the growths did; it needs one target per lineage group.

    Example (K = 3 grown to 6 by interleaving):
        >>> layer_pairs("l2l", [0, 0, 1, 1, 2, 2], [4, 8, 12], 12)
        [(2, 4), (4, 8), (6, 12)]
        >>> layer_pairs("l2l_proportional", [0, 0, 1, 1, 2, 2], [0, 3, 12], 12)
        [(0, 0), (2, 3), (6, 12)]
    """
    if mode not in MODES:
        raise StackingConfigError(f"unknown alignment mode '{mode}'; one of {MODES}")
    if not lineage:
        raise StackingConfigError("no student layers: the lineage is empty")
    check_targets(targets, teacher_layers)
    depth = len(lineage)
    if mode == "pred":
        return [(depth, t) for t in targets]
    if mode == "l2l_proportional":
        return [(_round_half_up(t * depth, teacher_layers), t) for t in targets]
    groups = sorted(set(lineage))
    if len(groups) != len(targets):
        raise StackingConfigError(
            f"l2l pairs one teacher target per initial layer: {len(groups)} initial layers "
            f"but {len(targets)} targets {list(targets)}; give {len(groups)} targets or use "
            "--mode l2l_proportional"
        )
    last = {g: i for i, g in enumerate(lineage)}  # later layers overwrite: the last one wins
    return [(last[g] + 1, t) for g, t in zip(groups, targets)]
