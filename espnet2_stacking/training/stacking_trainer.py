"""ESPnet's Trainer, plus growth of the student at the plan's update boundaries.

ESPnet's loop is kept whole: this subclass only wraps the batch iterator so that, before each
batch, a student whose update count has reached a stage boundary grows (weights copied in
place, optimizer state carried by the chosen rule). Progress lives in the model's buffers, so
resuming from ESPnet's epoch checkpoint replays the epoch and grows at the same update.

stacking.jsonl (output dir, rank 0) has one line per growth:
    {"update", "epoch", "from", "to", "src", "stage_seconds"}
and, once training ends, a last line {"summary": {...}} with total seconds, seconds per
stage and depth per stage. On resume, lines for growths past the checkpoint's depth are
dropped, so every growth appears exactly once; a checkpoint whose depth and lineage the plan
cannot have produced (a resume with another stacking_conf) is refused before the first update.
"""

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Tuple

import torch
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.student.espnet_model import DistillModel
from espnet2_stacking.training.optimizer_state import RULES, transfer_optimizer_state

LOG_NAME = "stacking.jsonl"


def _unwrap(model: torch.nn.Module) -> DistillModel:
    core = model.module if isinstance(
        model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    ) else model
    if not isinstance(core, DistillModel):
        raise TypeError(f"StackingTrainer trains a DistillModel, got {type(core).__name__}")
    return core


def _is_rank0(distributed_option) -> bool:
    return not distributed_option.distributed or distributed_option.dist_rank == 0


def _write_lines(path: Path, records: List[dict]) -> None:
    """Rewrite the log atomically: never a half-written file after a kill."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def check_ranks_agree(model: torch.nn.Module, what: str) -> None:
    """Under DDP, fail loudly unless every rank holds the same weights and growth state.

    Each parameter and buffer is reduced to two numbers (its sum and its sum of squares);
    MIN and MAX all-reduces of those must agree. Cheap, and run only at growths and at the end.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    # every rank times itself: its wall clock is the one thing allowed to differ
    tensors = list(model.parameters()) + [
        b for name, b in model.named_buffers() if name != "train_seconds"
    ]
    sums = torch.stack([
        torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()])
        for t in tensors
    ]).flatten()
    low, high = sums.clone(), sums.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"stacking: ranks hold different weights {what}; distributed "
                           "training has diverged")
    logging.info(f"stacking: all {torch.distributed.get_world_size()} ranks agree {what}")


def read_stacking_log(path: Path) -> List[dict]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_plan_lineage(core: DistillModel) -> None:
    """Refuse a student whose growth state the stacking plan cannot have produced.

    Run before each epoch's first update, after ESPnet has loaded the checkpoint: the depth must
    be one of the plan's depths, no deeper than the plan prescribes at the update count (a
    shallower one is a growth pending, due before the next batch), and the encoder's lineage
    the plan's at that depth. A mismatch means the run was resumed with another stacking_conf,
    which would pair the states with the wrong layers without a word.
    """
    plan = core.plan
    depth, lineage = core.depth, core.encoder.lineage
    updates = int(core.num_updates.item())
    depths = list(plan.depths)
    if depth not in depths:
        expected, found = None, f"has no depth {depth} (depths {depths})"
    else:
        stage = depths.index(depth)
        expected = list(range(depths[0])) if stage == 0 else list(plan.growths[stage - 1].lineage)
        found = f"gives lineage {expected} at depth {depth} (method {plan.method}, depths {depths})"
    due = core.due_depth()
    if expected == lineage and depth <= due:
        return
    changed, length = "method, anchor, depths", ""
    if expected == lineage:  # the right lineage, too deep: the boundaries moved
        found = (f"reaches only depth {due} after {updates} updates (depths {depths}, "
                 f"boundaries {list(plan.boundaries)})")
        changed += ", schedule"
        length = (" or with another run length (max_epoch, num_iters_per_epoch, accum_grad, "
                  "total_updates)")
    raise RuntimeError(
        f"stacking: the checkpoint's student has depth {depth} and lineage {lineage} after "
        f"{updates} updates, but the stacking plan {found}: the run was resumed with a "
        f"different stacking_conf ({changed}) than it was started with{length}; resume with "
        "the original settings, or start a new output_dir"
    )


@dataclasses.dataclass
class StackingTrainerOptions(TrainerOptions):
    max_skipped_updates: int
    optimizer_state_rule: str


class _SkipWatch:
    """Tells skipped updates from the update counter (an optimizer-step hook): ESPnet steps
    after every accum_grad batches unless the gradient norm is not finite."""

    def __init__(self, core: DistillModel, accum_grad: int, max_skipped: int, epoch: int):
        self.core, self.accum_grad, self.max_skipped, self.epoch = core, accum_grad, max_skipped, epoch
        self.last_updates = int(core.num_updates.item())
        self.batches_since = 0
        self.in_a_row = 0

    def check(self) -> None:
        updates = int(self.core.num_updates.item())
        if updates > self.last_updates:
            self.in_a_row, self.batches_since = 0, 0
        elif self.batches_since >= self.accum_grad:
            self.in_a_row += 1
            self.batches_since = 0
            self.core.skipped_updates += 1
            logging.warning(
                f"stacking: update skipped (non-finite gradient) at update {updates}; "
                f"{self.in_a_row} in a row, {int(self.core.skipped_updates.item())} in all"
            )
            if self.max_skipped and self.in_a_row >= self.max_skipped:
                raise RuntimeError(
                    f"{self.in_a_row} updates in a row were skipped for a non-finite gradient "
                    f"(at update {updates}, epoch {self.epoch}): the loss or the targets are "
                    "not finite. With fp16/bf16 or a high-norm teacher, normalise the targets "
                    "(--normalize layer_norm for the dump, --teacher_normalize layer_norm "
                    "online) or lower the learning rate"
                )
        self.last_updates = updates


class StackingTrainer(Trainer):
    """Trainer that grows a DistillModel by its stacking plan, between updates.

    It also watches the updates ESPnet's loop skips (a non-finite gradient norm: the step is
    dropped): each is logged and counted, and a run that keeps skipping stops with a clear
    message instead of burning GPU hours on nothing.
    """

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        parser.add_argument(
            "--optimizer_state_rule", type=str, default="copy", choices=RULES,
            help="The optimizer state at a growth: copy (new layers take their source's "
                 "moments), reset (new layers start with none) or reset_all (a fresh optimizer; "
                 "docs/method.md section 5)",
        )
        parser.add_argument(
            "--max_skipped_updates", type=int, default=20,
            help="Stop when this many updates in a row are skipped for a non-finite gradient "
                 "(fp16 overflow, bad targets); 0 never stops",
        )

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> StackingTrainerOptions:
        return build_dataclass(StackingTrainerOptions, args)

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        core = _unwrap(model)
        log_path = Path(options.output_dir) / LOG_NAME
        rank0 = _is_rank0(distributed_option)
        # after ESPnet's resume, before the first update; every epoch, as it costs nothing
        check_plan_lineage(core)
        if rank0:
            cls._keep_checkpoint_growths(log_path, core)
        grown = cls._growing(core, iterator, optimizers, reporter.get_epoch(), log_path, rank0,
                             options.optimizer_state_rule, options.accum_grad,
                             options.max_skipped_updates)
        all_invalid = super().train_one_epoch(
            model=model,
            iterator=grown,
            optimizers=optimizers,
            schedulers=schedulers,
            scaler=scaler,
            reporter=reporter,
            summary_writer=summary_writer,
            options=options,
            distributed_option=distributed_option,
        )
        if all_invalid and not options.no_forward_run:
            # ESPnet would stop here with exit status 0, which reads as a finished run
            raise RuntimeError(
                f"every update of epoch {reporter.get_epoch()} was skipped for a non-finite "
                "gradient: the loss or the targets are not finite (see the warnings above)"
            )
        return all_invalid

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        super().run(
            model=model,
            optimizers=optimizers,
            schedulers=schedulers,
            train_iter_factory=train_iter_factory,
            valid_iter_factory=valid_iter_factory,
            plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=trainer_options,
            distributed_option=distributed_option,
        )
        check_ranks_agree(_unwrap(model), "at the end of training")
        if _is_rank0(distributed_option):
            cls._write_summary(_unwrap(model), Path(trainer_options.output_dir) / LOG_NAME)

    # ---- growth -------------------------------------------------------------------------
    @staticmethod
    def _growing(core: DistillModel, iterator: Iterable, optimizers, epoch: int,
                 log_path: Path, rank0: bool, optimizer_state_rule: str = "copy",
                 accum_grad: int = 1,
                 max_skipped: int = 0) -> Iterator[Tuple[List[str], Dict]]:
        core.start_timing()
        watch = _SkipWatch(core, accum_grad, max_skipped, epoch)
        for item in iterator:
            watch.check()
            # The previous update has completed (the trainer zeroes grads right after the
            # step), so weights and moments can be copied without racing anything.
            while core.due_depth() > core.depth:
                records = read_stacking_log(log_path) if rank0 else []
                stage_start = sum(r["stage_seconds"] for r in records if "summary" not in r)
                stage_seconds = float(core.train_seconds.item()) - stage_start
                from_depth, to_depth, src = core.grow_once()
                for optimizer in optimizers:
                    transfer_optimizer_state(optimizer, core.encoder, src, optimizer_state_rule)
                update = int(core.num_updates.item())
                check_ranks_agree(core, f"after the growth to {to_depth} layers")
                logging.info(
                    f"stacking: grew {from_depth} -> {to_depth} layers at update {update} "
                    f"(epoch {epoch}), src={src}; the stage took {stage_seconds:.1f} s"
                )
                if rank0:
                    records.append({
                        "update": update, "epoch": epoch, "from": from_depth,
                        "to": to_depth, "src": src, "stage_seconds": round(stage_seconds, 3),
                    })
                    _write_lines(log_path, records)
            yield item
            watch.batches_since += 1
        watch.check()

    @staticmethod
    def _keep_checkpoint_growths(log_path: Path, core: DistillModel) -> None:
        """Keep what the checkpoint holds: the growths up to its depth, no summary.

        By depth, not by update count: a growth due at the last update U of an epoch happens
        (and is logged with update U) before the next epoch's first batch, while that epoch's
        checkpoint holds U updates and the depth before it; resumed from it, the growth happens
        again and must not be logged twice.
        """
        records = read_stacking_log(log_path)
        kept = [r for r in records if "summary" not in r and r["to"] <= core.depth]
        if kept != records:
            _write_lines(log_path, kept)

    @staticmethod
    def _write_summary(core: DistillModel, log_path: Path) -> None:
        records = [r for r in read_stacking_log(log_path) if "summary" not in r]
        total = float(core.train_seconds.item())
        stage_seconds = [r["stage_seconds"] for r in records]
        stage_seconds.append(round(total - sum(stage_seconds), 3))
        depths = [records[0]["from"]] if records else [core.depth]
        depths += [r["to"] for r in records]
        records.append({
            "summary": {
                "total_seconds": round(total, 3),
                "stage_seconds": stage_seconds,
                "stage_depths": depths,
                "updates": int(core.num_updates.item()),
                "skipped_updates": int(core.skipped_updates.item()),
                "final_depth": core.depth,
            }
        })
        _write_lines(log_path, records)
