"""Distillation losses between projected student states and teacher states.

Each supervised pair (student state s, teacher state t) gives one term; the pair whose teacher
state is the deepest is the *output* term, the others are *intermediate* terms:
    loss = output + intermediate_weight * reduce(intermediate terms)
with reduce = sum or mean. Per-term distances: mse, l1, or l1 plus a cosine term (raw -cos, or
DistilHuBERT's -log sigmoid(cos)). Padded frames never count. The distances are computed in
float32 at least (predictions in bf16/fp16 under autocast, dumped targets in fp16 are cast up,
never down), so the loss is float32 (float64 for float64 inputs).
"""

from typing import Dict, Literal, Sequence, Tuple

import torch
import torch.nn.functional as F
from typeguard import typechecked

LossType = Literal["mse", "l1", "l1_cos"]
CosType = Literal["raw", "logsigmoid"]


class DistillationLoss(torch.nn.Module):
    """Weighted sum of per-pair distances over valid frames.

    Args:
        loss_type: "mse", "l1" or "l1_cos".
        cos_type: for l1_cos, "raw" adds -cos, "logsigmoid" adds -log(sigmoid(cos)).
        cos_weight: weight of the cosine part of l1_cos (DistilHuBERT's lambda).
        intermediate_weight: w in output + w * intermediate.
        intermediate_reduce: "sum" or "mean" over the intermediate terms.

    Example:
        >>> loss = DistillationLoss("mse", intermediate_weight=0.5)
        >>> pred = {4: torch.zeros(2, 5, 3), 12: torch.zeros(2, 5, 3)}
        >>> tgt = {4: torch.ones(2, 5, 3), 12: torch.ones(2, 5, 3)}
        >>> total, terms = loss(pred, tgt, torch.tensor([5, 3]))
        >>> float(total), sorted(terms)
        (1.5, [4, 12])
    """

    @typechecked
    def __init__(
        self,
        loss_type: LossType = "mse",
        cos_type: CosType = "logsigmoid",
        cos_weight: float = 1.0,
        intermediate_weight: float = 0.5,
        intermediate_reduce: Literal["sum", "mean"] = "sum",
    ):
        super().__init__()
        self.loss_type = loss_type
        self.cos_type = cos_type
        self.cos_weight = cos_weight
        self.intermediate_weight = intermediate_weight
        self.intermediate_reduce = intermediate_reduce

    def distance(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean distance over the valid frames.

        Args:
            pred, target: (batch, frames, dim).
            mask: (batch, frames) bool, True on valid frames.
        """
        # float32 at least: cast up (never the targets down to a bf16/fp16 prediction)
        dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
        pred, target = pred.to(dtype), target.to(dtype)
        mask = mask.to(dtype)
        valid = mask.sum().clamp(min=1)
        if self.loss_type == "mse":
            per_frame = (pred - target).pow(2).mean(-1)
        else:
            per_frame = (pred - target).abs().mean(-1)
            if self.loss_type == "l1_cos":
                cos = F.cosine_similarity(pred, target, dim=-1)
                cos_term = -cos if self.cos_type == "raw" else -F.logsigmoid(cos)
                per_frame = per_frame + self.cos_weight * cos_term
        return (per_frame * mask).sum() / valid

    def forward(
        self,
        preds: Dict[int, torch.Tensor],
        targets: Dict[int, torch.Tensor],
        lengths: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Total loss and the term of each teacher state.

        Args:
            preds: teacher state index -> projected student state (batch, frames, dim).
            targets: teacher state index -> teacher state (batch, frames, dim), same frames.
            lengths: (batch,) valid frames.
        Returns:
            (total loss, {teacher state index: term}).
        """
        if set(preds) != set(targets):
            raise ValueError(
                f"predictions for teacher states {sorted(preds)} but targets for {sorted(targets)}"
            )
        frames = next(iter(preds.values())).size(1)
        mask = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
        terms = {t: self.distance(preds[t], targets[t], mask) for t in sorted(preds)}
        output_layer = max(terms)
        total = terms[output_layer]
        inter: Sequence[torch.Tensor] = [v for t, v in terms.items() if t != output_layer]
        if inter:
            stacked = torch.stack(list(inter))
            reduced = stacked.sum() if self.intermediate_reduce == "sum" else stacked.mean()
            total = total + self.intermediate_weight * reduced
        return total, terms
