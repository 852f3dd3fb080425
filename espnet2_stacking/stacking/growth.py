"""Growth maps: which old layer each layer of the deeper stack starts as a copy of.

A growth from depth d to d' > d is ``src`` (length d'): new layer i starts as an exact copy of
old layer src[i]. ``lineage[i]`` is the initial layer a layer descends from; after a growth
new_lineage[i] = lineage[src[i]]. See docs/method.md section 3. Integer arithmetic only.

Methods (G = d' - d layers are added):
- ``interleaved``: each copy right after its source, so every lineage group stays one run.
  From the initial stack (each layer its own group) anchor ``last``:
  src[i] = ceil((i + 1) d / d') - 1; anchor ``first``: src[i] = floor(i d / d').
  3 -> 6: [0, 0, 1, 1, 2, 2]; 6 -> 9 (last): [0, 1, 1, 2, 3, 3, 4, 5, 5].
  Later growths apply that rule within each lineage group, growing the groups so that their
  sizes stay within one of each other (see :func:`interleaved_growth`); when every group grows
  equally this is the same closed form over the whole stack.
- ``stackbert``: the stack copied on top, src[i] = i mod d (A B C -> A B C A B C). For d' != 2d
  the same rule: d' < 2d copies the bottom d' - d layers on top, d' > 2d repeats the stack.
- ``gradual``: the old stack stays at the bottom and its top G layers are copied onto the top,
  src[d + k] = d - G + k. G > d copies the top G layers of the stack repeated ceil(G / d)
  times, so the new top is still the old top: 2 -> 6: [0, 1, 0, 1, 0, 1];
  3 -> 7: [0, 1, 2, 2, 0, 1, 2].
- ``midas``: a run of layers copied right after itself (see :func:`midas_map` for the rule).
- ``none``: the full depth from step 0; growing is refused.
"""

from typing import List, Optional, Sequence

from espnet2_stacking.stacking.errors import StackingConfigError

METHODS = ("interleaved", "stackbert", "gradual", "midas", "none")
ANCHORS = ("last", "first")


def check_int(name: str, value, minimum: int) -> None:
    """Refuse a value that is not an int (bools too) or is below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StackingConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def interleaved_map(d: int, d_new: int, anchor: str = "last") -> List[int]:
    """Each copy right after its source: last: ceil((i+1) d / d') - 1; first: floor(i d / d')."""
    if anchor == "last":
        return [((i + 1) * d + d_new - 1) // d_new - 1 for i in range(d_new)]
    if anchor == "first":
        return [(i * d) // d_new for i in range(d_new)]
    raise StackingConfigError(f"anchor must be one of {ANCHORS}, got '{anchor}'")


def group_sizes(lineage: Sequence[int]) -> List[int]:
    """The length of each run of equal lineage values, bottom to top.

    Example:
        >>> group_sizes([0, 1, 1, 2, 2])
        [1, 2, 2]
    """
    sizes: List[int] = []
    for i, g in enumerate(lineage):
        if i and lineage[i - 1] == g:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


def _spread(extra: int, count: int, j: int, anchor: str) -> int:
    """1 when the j-th of ``count`` tied groups takes one of ``extra`` < count layers: the same
    spread the closed form gives single layers (anchor last favours the upper groups:
    floor((j + 1) e / m) - floor(j e / m); first the lower ones: the same with ceil)."""
    if anchor == "last":
        return (j + 1) * extra // count - j * extra // count
    return -(-(j + 1) * extra // count) + (-j * extra // count)  # ceil(..) - ceil(..)


def interleaved_growth(lineage: Sequence[int], new_depth: int, anchor: str = "last") -> List[int]:
    """``src`` of an interleaved growth that keeps the lineage groups as even as it can.

    ``lineage`` must be contiguous (each group one run, as interleaving keeps it). The new group
    sizes fill the smallest groups first: every group of fewer than L layers grows to L, for the
    greatest level L the new depth allows, and the e layers left over go one each to e of the
    groups now at L, spread over them in order like single layers in the closed form (anchor
    ``last``: the j-th of m such groups takes one when floor((j + 1) e / m) > floor(j e / m),
    which favours the upper groups; ``first``: the same with ceil, the lower groups). Balanced
    groups (sizes within one, as every plan has) therefore stay balanced at any new depth. A
    group growing from a to b layers takes :func:`interleaved_map` (a, b) within itself, so a
    group gaining one layer copies its anchor layer (its last, or first, layer) and a group more
    than doubling copies a layer several times.

    From the initial stack (every group one layer) this is :func:`interleaved_map` exactly, and
    so it is whenever every group grows equally (d = K a -> d' = K b).

    Example (3 -> 5 -> 8 with anchor last; the groups have 1, 2, 2 layers at depth 5):
        >>> interleaved_growth([0, 1, 2], 5)
        [0, 1, 1, 2, 2]
        >>> interleaved_growth([0, 1, 1, 2, 2], 8)
        [0, 0, 1, 2, 2, 3, 4, 4]
    """
    if anchor not in ANCHORS:
        raise StackingConfigError(f"anchor must be one of {ANCHORS}, got '{anchor}'")
    depth = len(lineage)
    if not is_contiguous(lineage):
        raise StackingConfigError(
            f"interleaved growth {depth} -> {new_depth}: lineage {list(lineage)} is not "
            "contiguous (each group must be one run)"
        )
    if depth == 0 or new_depth <= depth:
        raise StackingConfigError(
            f"a growth must go to a greater depth: {depth} -> {new_depth}"
        )
    old = group_sizes(lineage)
    level = min(old)
    while sum(max(a, level + 1) for a in old) <= new_depth:
        level += 1
    new = [max(a, level) for a in old]
    tied = [g for g, a in enumerate(old) if a <= level]  # the groups now at the level
    extra = new_depth - sum(new)  # < len(tied), or the level would be one higher
    for j, g in enumerate(tied):
        new[g] += _spread(extra, len(tied), j, anchor)
    src, offset = [], 0
    for a, b in zip(old, new):
        src += [offset + j for j in interleaved_map(a, b, anchor)]
        offset += a
    return src


def stackbert_map(d: int, d_new: int) -> List[int]:
    """The whole stack copied on top (A B C -> A B C A B C); d' != 2d cycles the same way."""
    return [i % d for i in range(d_new)]


def gradual_map(d: int, d_new: int) -> List[int]:
    """The top G = d' - d layers copied onto the top; G > d repeats the stack first."""
    grow = d_new - d
    repeated = list(range(d)) * -(-grow // d)  # ceil(G / d) copies: enough to take G from
    return list(range(d)) + repeated[-grow:]


def midas_start(d: int, grow: int, block_size: int) -> int:
    """First layer of the run of ``grow`` layers that MIDAS duplicates in a stack of ``d``.

    Block aligned (d = n D for the block size D and grow = D): block m = ceil(n / 2) (1-based),
    i.e. start (m - 1) D, which is MIDAS's block formula. Otherwise the run centred in the
    stack: start (d - grow) // 2, half a layer low when d - grow is odd.

    The two agree whenever n is odd ((d - D) / 2 = (m - 1) D). For even n the stack's centre is
    the boundary between the two middle blocks; the block formula takes the lower one (block
    n / 2) where exact centring would straddle both, and aligned growths follow MIDAS.
    """
    if d % block_size == 0 and grow == block_size:
        n = d // block_size
        return ((n + 1) // 2 - 1) * block_size
    return (d - grow) // 2


def midas_map(d: int, d_new: int, block_size: int) -> List[int]:
    """MIDAS: the run of G = d' - d layers from :func:`midas_start` copied right after itself:
    src = [0 .. s+G-1] + [s .. s+G-1] + [s+G .. d-1].

    MIDAS's D = 3 examples (n = d / 3 blocks, middle block m = ceil(n / 2)):
    3 -> 6: [0,1,2,0,1,2]; 6 -> 9: [0,1,2,0,1,2,3,4,5]; 9 -> 12: [0..5,3,4,5,6,7,8].
    G > d cannot be one run of the old stack: the stack first doubles (d -> 2d, the whole stack
    copied after itself) and grows on from 2d by the same rule, composing the maps.
    """
    check_int("midas block size", block_size, 1)
    grow = d_new - d
    if grow > d:
        first = midas_map(d, 2 * d, block_size)
        rest = midas_map(2 * d, d_new, block_size)
        return [first[j] for j in rest]
    start = midas_start(d, grow, block_size)
    block = list(range(start, start + grow))
    return list(range(start + grow)) + block + list(range(start + grow, d))


def growth_map(method: str, old_depth: int, new_depth: int, *, anchor: str = "last",
               block_size: Optional[int] = None,
               lineage: Optional[Sequence[int]] = None) -> List[int]:
    """``src`` for a growth old_depth -> new_depth by ``method``; checked before return.

    ``lineage`` (interleaved only; the other maps do not depend on it) is the stack's lineage
    before the growth: the copies go where they keep the lineage groups balanced
    (:func:`interleaved_growth`). Without it each layer counts as its own group, which is the
    closed form :func:`interleaved_map`, right for a growth from the initial stack only.

    Example:
        >>> growth_map("interleaved", 3, 6)
        [0, 0, 1, 1, 2, 2]
        >>> growth_map("midas", 9, 12, block_size=3)
        [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8]
    """
    if method not in METHODS:
        raise StackingConfigError(f"unknown stacking method '{method}'; one of {METHODS}")
    check_int("old depth", old_depth, 1)
    check_int("new depth", new_depth, 1)
    if new_depth <= old_depth:
        raise StackingConfigError(
            f"a growth must go to a greater depth: {old_depth} -> {new_depth}"
        )
    if method == "none":
        raise StackingConfigError(
            "method 'none' trains the full depth from the start and never grows; give one depth"
        )
    if lineage is not None and len(lineage) != old_depth:
        raise StackingConfigError(
            f"a lineage of {len(lineage)} layers for a growth from {old_depth} layers"
        )
    if method == "interleaved":
        if lineage is None:
            src = interleaved_map(old_depth, new_depth, anchor)
        else:
            src = interleaved_growth(lineage, new_depth, anchor)
    elif method == "stackbert":
        src = stackbert_map(old_depth, new_depth)
    elif method == "gradual":
        src = gradual_map(old_depth, new_depth)
    else:
        if block_size is None:
            raise StackingConfigError("midas needs a block size (--block_size)")
        src = midas_map(old_depth, new_depth, block_size)
    check_growth(method, old_depth, new_depth, src)
    return src


def grow_lineage(lineage: Sequence[int], src: Sequence[int]) -> List[int]:
    """The lineage after a growth: each new layer inherits its source's.

    Example:
        >>> grow_lineage([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 3, 3, 4, 5, 5])
        [0, 0, 0, 1, 1, 1, 2, 2, 2]
    """
    bad = [j for j in src if not 0 <= j < len(lineage)]
    if bad:
        raise StackingConfigError(
            f"src {list(src)} names layers {bad} outside a stack of {len(lineage)}"
        )
    return [lineage[j] for j in src]


def is_contiguous(lineage: Sequence[int]) -> bool:
    """Each lineage value occupies one run, runs in increasing order (A A B B C C)."""
    return all(a <= b for a, b in zip(lineage, lineage[1:]))


def check_growth(method: str, old_depth: int, new_depth: int, src: Sequence[int]) -> None:
    """Raise StackingConfigError when ``src`` breaks its method's rules.

    Every method: len(src) == new_depth > old_depth, sources in 0..old_depth-1, every old layer
    used at least once. Interleaved: src non-decreasing (each copy next to its source).
    StackBERT: src[i] = i mod d. Gradual: the old stack kept at the bottom. MIDAS: the old stack
    survives in order once the inserted copies are taken out.
    """
    def fail(why: str):
        raise StackingConfigError(
            f"{method} growth {old_depth} -> {new_depth} is invalid: {why}; src={list(src)}"
        )

    if new_depth <= old_depth:
        fail("the new depth is not greater")
    if len(src) != new_depth:
        fail(f"src has {len(src)} entries for {new_depth} layers")
    if any(not 0 <= j < old_depth for j in src):
        fail("a source index is out of range")
    unused = sorted(set(range(old_depth)) - set(src))
    if unused:
        fail(f"old layers {unused} are not used")
    if method == "interleaved":
        if any(a > b for a, b in zip(src, src[1:])):
            fail("src is not non-decreasing (a copy moved away from its source)")
    elif method == "stackbert":
        if list(src) != [i % old_depth for i in range(new_depth)]:
            fail("src is not the stack repeated")
    elif method == "gradual":
        if list(src[:old_depth]) != list(range(old_depth)):
            fail("the old stack is not kept at the bottom")
    elif method == "midas":
        pos = 0  # taking the inserted copies out must leave the old stack, in order
        for j in src:
            if pos < old_depth and j == pos:
                pos += 1
        if pos != old_depth:
            fail("the old stack does not survive in order")


def check_balance(method: str, old_depth: int, new_depth: int,
                  new_lineage: Sequence[int]) -> None:
    """Raise StackingConfigError unless, for interleaved stacking, the lineage groups after the
    growth old_depth -> new_depth differ in size by at most one (other methods keep no groups).
    """
    if method != "interleaved":
        return
    sizes = group_sizes(new_lineage)
    if sizes and max(sizes) - min(sizes) > 1:
        raise StackingConfigError(
            f"interleaved growth {old_depth} -> {new_depth} leaves lineage groups of sizes "
            f"{sizes}, which differ by more than one"
        )


def check_lineage(method: str, old_lineage: Sequence[int], src: Sequence[int],
                  new_lineage: Sequence[int]) -> None:
    """Raise StackingConfigError unless new_lineage[i] == old_lineage[src[i]] for every layer
    and, for interleaved stacking, every lineage group is one contiguous run, in order."""
    old, new = len(old_lineage), len(src)
    if len(new_lineage) != new:
        raise StackingConfigError(
            f"{method} growth {old} -> {new}: lineage has {len(new_lineage)} entries for "
            f"{new} layers"
        )
    if list(new_lineage) != grow_lineage(old_lineage, src):
        raise StackingConfigError(
            f"{method} growth {old} -> {new}: lineage {list(new_lineage)} does not follow "
            f"src {list(src)} from {list(old_lineage)}"
        )
    if method == "interleaved" and not is_contiguous(new_lineage):
        raise StackingConfigError(
            f"interleaved growth {old} -> {new}: lineage {list(new_lineage)} is not contiguous"
        )
