"""Linear warm-up then linear decay to zero, over the whole run.

Stacking must not restart the schedule at a growth (docs/method.md section 5): one schedule covers
every stage. ESPnet's PiecewiseLinearWarmupLR takes absolute learning rates and decays like
Noam after its last point, so this scheduler is expressed relative to the optimizer's lr and
in fractions of the run, which is how the paper states it (7 % warm-up, linear decay).
"""

from typing import Optional

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from torch.optim.lr_scheduler import _LRScheduler
from typeguard import typechecked


class WarmupLinearDecayLR(_LRScheduler, AbsBatchStepScheduler):
    """The lr of the update after s updates: base_lr * (s + 1) / W while s < W, then
    base_lr * (T - s) / (T - W): the first update is not at 0, the peak is reached on update W,
    and the last update (s = T - 1) still learns, at base_lr / (T - W).

    Args:
        optimizer: the wrapped optimizer; its ``lr`` is the peak rate.
        total_steps: T, the number of updates of the whole run. DistillTask fills it in from
            ``max_epoch * num_iters_per_epoch / accum_grad`` when left out.
        warmup_ratio: W / T.
        warmup_steps: W directly (overrides ``warmup_ratio``).

    Example:
        >>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = WarmupLinearDecayLR(opt, total_steps=100, warmup_ratio=0.1)
        >>> sched.get_last_lr()  # the first update: 1/10 of the way up the warm-up
        [0.1]
    """

    @typechecked
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: Optional[int] = None,
        warmup_ratio: float = 0.07,
        warmup_steps: Optional[int] = None,
        last_epoch: int = -1,
    ):
        if total_steps is None or total_steps <= 0:
            raise ValueError(
                f"WarmupLinearDecayLR needs total_steps > 0 (got {total_steps}); set "
                "scheduler_conf.total_steps or --num_iters_per_epoch so it can be derived"
            )
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.total_steps = total_steps
        self.warmup_steps = (
            warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps)
        )
        if not 0 <= self.warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}), got {self.warmup_steps}"
            )
        super().__init__(optimizer, last_epoch)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(total_steps={self.total_steps}, "
            f"warmup_steps={self.warmup_steps})"
        )

    def lr_factor(self, done: int) -> float:
        """The multiplier of the peak lr for the update that follows ``done`` updates."""
        if done < self.warmup_steps:
            return (done + 1) / self.warmup_steps
        return max(0.0, (self.total_steps - done) / (self.total_steps - self.warmup_steps))

    def get_lr(self):
        # _LRScheduler's last_epoch counts the step() calls, i.e. the updates done.
        factor = self.lr_factor(self.last_epoch)
        return [float(base_lr * factor) for base_lr in self.base_lrs]
