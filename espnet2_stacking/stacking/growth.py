"""Growth maps: which old layer each layer of the deeper stack starts as a copy of.

A growth from depth d to d' > d is ``src`` (length d'): new layer i starts as an exact copy of
old layer src[i]. ``lineage[i]`` is the initial layer a layer descends from; after a growth
new_lineage[i] = lineage[src[i]]. See METHOD.md section 3. Integer arithmetic only.
"""

from typing import List, Optional, Sequence

from espnet2_stacking.stacking.errors import StackingConfigError

METHODS = ("interleaved", "stackbert", "gradual", "midas", "none")
ANCHORS = ("last", "first")


def interleaved_map(d: int, d_new: int, anchor: str = "last") -> List[int]:
    """Each copy right after its source: last: ceil((i+1) d / d') - 1; first: floor(i d / d')."""
    if anchor == "last":
        return [((i + 1) * d + d_new - 1) // d_new - 1 for i in range(d_new)]
    if anchor == "first":
        return [(i * d) // d_new for i in range(d_new)]
    raise StackingConfigError(f"anchor must be one of {ANCHORS}, got '{anchor}'")


def stackbert_map(d: int, d_new: int) -> List[int]:
    """The whole stack copied on top (A B C -> A B C A B C); d' != 2d cycles the same way."""
    return [i % d for i in range(d_new)]


def gradual_map(d: int, d_new: int) -> List[int]:
    """The top D = d' - d layers copied onto the top. For D > d the stack is repeated,
    top-aligned: d = 2, D = 4 gives [0, 1, 0, 1, 0, 1]."""
    grow = d_new - d
    return list(range(d)) + [d - 1 - ((grow - 1 - k) % d) for k in range(grow)]


def midas_map(d: int, d_new: int, block_size: int) -> List[int]:
    """MIDAS: a block copied right after itself.

    Block aligned (d a multiple of the block size D and d' - d = D): the stack is n = d / D
    blocks and block m = ceil(n / 2) (1-based) is duplicated:
    src = [0 .. mD-1] + [(m-1)D .. mD-1] + [mD .. d-1].
    Otherwise the G = d' - d layers centred in the stack, starting at (d - G) // 2, are
    duplicated right after themselves; G > d grows in steps of at most d.
    """
    if block_size <= 0:
        raise StackingConfigError(f"midas block size must be positive, got {block_size}")
    grow = d_new - d
    if grow > d:
        first = midas_map(d, 2 * d, block_size)
        rest = midas_map(2 * d, d_new, block_size)
        return [first[j] for j in rest]
    if d % block_size == 0 and grow == block_size:
        n = d // block_size
        start = ((n + 1) // 2 - 1) * block_size
    else:
        start = (d - grow) // 2
    block = list(range(start, start + grow))
    return list(range(start + grow)) + block + list(range(start + grow, d))


def growth_map(method: str, old_depth: int, new_depth: int, *, anchor: str = "last",
               block_size: Optional[int] = None) -> List[int]:
    """``src`` for a growth old_depth -> new_depth by ``method``; checked before return."""
    if method not in METHODS:
        raise StackingConfigError(f"unknown stacking method '{method}'; one of {METHODS}")
    if old_depth <= 0 or new_depth <= old_depth:
        raise StackingConfigError(
            f"a growth must go to a greater depth: {old_depth} -> {new_depth}"
        )
    if method == "none":
        raise StackingConfigError(
            "method 'none' trains the full depth from the start and never grows; give one depth"
        )
    if method == "interleaved":
        src = interleaved_map(old_depth, new_depth, anchor)
    elif method == "stackbert":
        src = stackbert_map(old_depth, new_depth)
    elif method == "gradual":
        src = gradual_map(old_depth, new_depth)
    else:
        if block_size is None:
            raise StackingConfigError("midas needs a block size (--block_size)")
        src = midas_map(old_depth, new_depth, block_size)
    check_growth(method, old_depth, src)
    return src


def grow_lineage(lineage: Sequence[int], src: Sequence[int]) -> List[int]:
    """The lineage after a growth: each new layer inherits its source's."""
    return [lineage[j] for j in src]


def is_contiguous(lineage: Sequence[int]) -> bool:
    """Each lineage value occupies one run, in increasing order (A A B B C C)."""
    return all(a <= b for a, b in zip(lineage, lineage[1:]))


def check_growth(method: str, old_depth: int, src: Sequence[int],
                 lineage: Optional[Sequence[int]] = None) -> None:
    """Raise AssertionError-like StackingConfigError when a growth breaks its method's rules.

    Every method: len(src) > old_depth, sources in range, every old layer used. Interleaved:
    src non-decreasing and (given) the new lineage contiguous. Gradual / MIDAS: the old stack
    survives in order once the inserted copies are taken out. StackBERT: src[i] = i mod d.
    """
    def fail(why: str):
        raise StackingConfigError(f"{method} growth {old_depth} -> {len(src)} is invalid: {why}; src={list(src)}")

    if len(src) <= old_depth:
        fail("the new depth is not greater")
    if any(not 0 <= j < old_depth for j in src):
        fail("a source index is out of range")
    if set(src) != set(range(old_depth)):
        fail(f"old layers {sorted(set(range(old_depth)) - set(src))} are not used")
    if method == "interleaved":
        if any(a > b for a, b in zip(src, src[1:])):
            fail("src is not non-decreasing (a copy moved away from its source)")
        if lineage is not None and not is_contiguous(lineage):
            fail(f"lineage {list(lineage)} is not contiguous")
    elif method == "stackbert":
        if list(src) != [i % old_depth for i in range(len(src))]:
            fail("src is not the stack repeated")
    elif method in ("gradual", "midas"):
        # taking the inserted copies out must leave the old stack, in order
        pos = 0
        for j in src:
            if pos < old_depth and j == pos:
                pos += 1
        if pos != old_depth:
            fail("the old stack does not survive in order")
        if method == "gradual" and list(src[:old_depth]) != list(range(old_depth)):
            fail("the old stack is not kept at the bottom")
