"""Carry optimizer state (Adam/AdamW moments) across a growth.

The encoder's layer slots are preallocated, so the optimizer already holds every slot's
parameters; a growth copies weights between slots, and the per-parameter state (for Adam and
AdamW in torch 2.14: ``step``, ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
``max_exp_avg_sq``) must follow by a rule (docs/method.md section 5):

- ``copy``: each slot takes a copy of its source layer's state, step count included;
- ``reset``: new layers start fresh. A layer that only moved (the original of a source: the
  first slot that takes it) keeps its own state; its copies (the later slots taking the same
  source) lose theirs, so the optimizer initialises them at their next step (zero moments,
  step 0). Interleaved, gradual, StackBERT and MIDAS growths all put the original first;
- ``reset_all``: all optimizer state is dropped (StackBERT's published script).

Learning rates and param groups are untouched: one schedule runs over the whole training.
"""

from typing import Dict, List, Sequence

import torch
from typeguard import typechecked

from espnet2_stacking.student.stacking_encoder import GrowableLayers

RULES = ("copy", "reset", "reset_all")


def _clone_state(state: Dict) -> Dict:
    return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}


@typechecked
def transfer_optimizer_state(
    optimizer: torch.optim.Optimizer,
    encoder: GrowableLayers,
    src: Sequence[int],
    rule: str,
) -> None:
    """Move the optimizer state of the encoder's layers as ``encoder.grow(src)`` moved them.

    Call it right after ``encoder.grow(src)``, with the same ``src``. An optimizer that holds
    none of the encoder's layers is left alone (except by ``reset_all``).

    Args:
        optimizer: e.g. torch.optim.AdamW over the model's parameters.
        encoder: the encoder that has just grown.
        src: the growth map given to grow(): new layer i copies old layer src[i].
        rule: "copy", "reset" or "reset_all".
    """
    if rule not in RULES:
        raise ValueError(f"optimizer state rule must be one of {RULES}, got '{rule}'")
    if len(src) != encoder.depth:
        raise ValueError(
            f"src has {len(src)} layers but the encoder is at depth {encoder.depth}: call "
            "transfer_optimizer_state right after encoder.grow(src), with the same src"
        )
    if rule == "reset_all":
        optimizer.state.clear()
        return
    slots: List[List[torch.nn.Parameter]] = [
        list(encoder.layer_slots()[i].parameters()) for i in range(len(src))
    ]
    # Read every source before writing any slot, as grow() does for the weights.
    saved = {
        j: [_clone_state(optimizer.state[p]) if p in optimizer.state else None for p in slots[j]]
        for j in set(src)
    }
    seen = set()
    with torch.no_grad():
        for i, j in enumerate(src):
            is_copy = j in seen
            seen.add(j)
            for param, state in zip(slots[i], saved[j]):
                if state is None or (rule == "reset" and is_copy):
                    optimizer.state.pop(param, None)
                else:
                    optimizer.state[param] = _clone_state(state)
