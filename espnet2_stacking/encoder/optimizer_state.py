"""Carry optimizer state (Adam/AdamW moments) across a growth.

The encoder's layer slots are preallocated, so the optimizer already holds every slot's
parameters; a growth copies weights between slots, and the moments must follow by a rule
(METHOD.md section 5):
- ``copy``: each slot takes a copy of its source layer's state (moments and step);
- ``reset``: a layer that moved keeps its own state; its copies start fresh (no state: the
  optimizer initialises them at their first step). The first slot holding a source is the
  original, the later ones are the copies (interleaved, gradual, StackBERT and MIDAS all put
  the original first);
- ``reset_all``: all optimizer state is dropped (StackBERT's published script).
Learning rates and param groups are untouched: one schedule runs over the whole training.
"""

from typing import Dict, List, Sequence

import torch

RULES = ("copy", "reset", "reset_all")


def _clone_state(state: Dict) -> Dict:
    return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}


@torch.no_grad()
def transfer_optimizer_state(optimizer: torch.optim.Optimizer, encoder, src: Sequence[int],
                             rule: str) -> None:
    """Move the state of ``encoder.encoders[j]``'s parameters to the slots that copied it.

    Call it right after ``encoder.grow(src)``; ``src`` as given to grow.
    """
    if rule not in RULES:
        raise ValueError(f"optimizer state rule must be one of {RULES}, got '{rule}'")
    if rule == "reset_all":
        optimizer.state.clear()
        return
    slots: List[List[torch.nn.Parameter]] = [
        list(encoder.encoders[i].parameters()) for i in range(len(src))
    ]
    # Snapshot the sources first: a slot may be written before it is read as a source.
    saved = {
        j: [_clone_state(optimizer.state[p]) if p in optimizer.state else None for p in slots[j]]
        for j in set(src)
    }
    seen = set()
    for i, j in enumerate(src):
        is_copy = j in seen
        seen.add(j)
        for param, state in zip(slots[i], saved[j]):
            if state is None or (rule == "reset" and is_copy):
                optimizer.state.pop(param, None)
            else:
                optimizer.state[param] = _clone_state(state)
