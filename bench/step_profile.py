#!/usr/bin/env python3
"""Where a distillation step's time goes, part by part, at every depth of the plan: data
loading (ESPnet's own loader, the config's workers), the online teacher, the CNN, the
pre-encoder, the positional convolution, the transformer layers, the rest of the forward (heads
and loss), backward, and the optimizer step (clipping included). Dumped and online targets.

Example (after bench/run_cpu.sh, which leaves the teacher and the dump in bench/work):
    P=bench/work/teacher_6x128 D=egs2/demo/distill1/data
    tools/venv/bin/python bench/step_profile.py --config bench/conf/distill_6x64_from_6x128.yaml \
        --data_dir $D/train --dump_dir $P/dump/train --teacher $P/exp/teacher/model.pth \
        --name cpu_cnn_trained

The student runs in training mode with the config's batches and crops, exactly as
distill_train builds them (DistillTask); it grows through the plan's depths with the plan's own
growth operator, --steps timed steps at each (after --warmup untimed ones). Forward parts are
timed with module hooks (with a CUDA synchronize at each boundary on a GPU, which costs a
little overlap). Writes bench/results/<name>_profile.json and prints ms per step.
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from espnet2.utils.types import str2bool
from stacking_speed import check_modes, distill_args  # bench/ is the script's directory

from espnet2_stacking.data.atomic import atomic_write_text

HOOKED = ("teacher", "cnn", "preencoder", "pos_conv", "layers")
PARTS = ("data",) + HOOKED + ("heads_loss", "backward", "optimizer")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="A distillation YAML")
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir: wav.scp, utt2num_samples")
    p.add_argument("--dump_dir", type=Path, default=None,
                   help="Its dump (dump_teacher_feats --out_dir: meta.json, layer_<t>.scp)")
    p.add_argument("--teacher", default=None, help="Teacher spec for the online mode")
    p.add_argument("--teacher_dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--frozen_teacher_cnn", type=str2bool, default=False,
                   help="The student's CNN is the teacher's, frozen (--student_cnn "
                        "teacher_frozen, as stacking_speed.py --frozen_teacher_cnn): the dump "
                        "mode reads its output from the dump, the online mode takes the teacher's")
    p.add_argument("--modes", default="dump,online")
    p.add_argument("--steps", type=int, default=10, help="Timed steps per depth")
    p.add_argument("--warmup", type=int, default=2, help="Untimed steps per depth")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--name", default="profile")
    p.add_argument("--out_dir", type=Path, default=Path("bench/results"))
    return p


class StepTimer:
    """Wall time of each part of a step, by forward hooks on the model's modules."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = defaultdict(float)
        self._open = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, part: str, since: float) -> float:
        t = self.now()
        self.seconds[part] += t - since
        return t

    def watch(self, module: torch.nn.Module, part: str) -> None:
        def start(mod, args):
            self._open[id(mod)] = self.now()

        def stop(mod, args, out):
            self.add(part, self._open.pop(id(mod)))

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)

    def watch_call(self, obj, method: str, part: str) -> None:
        """Time a plain method (the teacher is not a submodule of the student)."""
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t = self.now()
            out = inner(*args, **kwargs)
            self.add(part, t)
            return out

        setattr(obj, method, timed)


def build(args, mode: str):
    """DistillTask's model, optimizer and training iterator, as distill_train builds them."""
    from espnet2.train.distributed_utils import DistributedOption

    from espnet2_stacking.tasks.distill import DistillTask

    if mode == "dump" and args.dump_dir is None:
        raise SystemExit("--modes dump needs --dump_dir")
    # ESPnet wants a valid set to parse; only the training iterator is built
    splits = {tag: (args.data_dir, args.dump_dir) for tag in ("train", "valid")}
    argv = ["--config", str(args.config), "--output_dir", "/nonexistent", "--ngpu", str(args.ngpu),
            *distill_args(splits, mode, args.teacher, args.frozen_teacher_cnn)]
    if mode == "online":
        argv += ["--teacher_dtype", args.teacher_dtype]
    task_args = DistillTask.get_parser().parse_args(argv)
    # what ESPnet's main does after parsing (check_required_command_args): the dump dirs
    # expand into the config's layer lists (and the frozen CNN's output), old options fail
    DistillTask.resolve_args(task_args)
    device = torch.device("cuda" if args.ngpu > 0 else "cpu")
    model = DistillTask.build_model(task_args).to(device)
    for prefix in task_args.freeze_param:  # what ESPnet's main_worker does with --freeze_param
        for name, param in model.named_parameters():
            if name == prefix or name.startswith(prefix + "."):
                param.requires_grad_(False)
    optimizer = DistillTask.build_optimizers(task_args, model)[0]
    # one process, no process group: the defaults are ESPnet's single-process options
    factory = DistillTask.build_iter_factory(task_args, DistributedOption(), mode="train")
    return task_args, model, optimizer, factory, device


def batches(factory):
    """ESPnet's (utt_ids, batch) pairs, epoch after epoch."""
    epoch = 1
    while True:
        yield from factory.build_iter(epoch)
        epoch += 1


def profile_mode(args, mode: str) -> dict:
    from espnet2.torch_utils.device_funcs import to_device

    task_args, model, optimizer, factory, device = build(args, mode)
    timer = StepTimer(device)
    timer.watch(model.frontend, "cnn")
    if model.preencoder is not None:
        timer.watch(model.preencoder, "preencoder")
    # the positional convolution: ESPnet's input layer, or HuBERT's (the hubert student)
    pos_conv = getattr(model.encoder, "embed", None)
    if pos_conv is None and hasattr(model.encoder, "transformer"):
        pos_conv = model.encoder.transformer.pos_conv_embed
    if pos_conv is not None:
        timer.watch(pos_conv, "pos_conv")
    for layer in model.encoder.layer_slots():
        timer.watch(layer, "layers")
    if model.teacher is not None:
        timer.watch_call(model.teacher, "extract_features_and_cnn", "teacher")  # extract_features calls it too
    params = [p for p in model.parameters() if p.requires_grad]

    def hooked_seconds() -> float:
        return sum(timer.seconds[p] for p in HOOKED)

    model.train()
    loader = batches(factory)
    rows = {}
    for depth in model.plan.depths:
        while model.depth < depth:
            model.grow_once()
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                timer.seconds.clear()
            t = timer.now()
            utt_ids, batch = next(loader)
            batch = to_device(batch, device)
            t = timer.add("data", t)
            before = hooked_seconds()
            loss, _, _ = model(**batch)
            end = timer.now()
            # what no hook saw: masks, trimming, the prediction heads and the loss
            timer.seconds["heads_loss"] += (end - t) - (hooked_seconds() - before)
            t = end
            loss.backward()
            t = timer.add("backward", t)
            torch.nn.utils.clip_grad_norm_(params, task_args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            timer.add("optimizer", t)
        per_step = {p: round(1000 * timer.seconds[p] / args.steps, 2) for p in PARTS}
        per_step["total"] = round(sum(per_step.values()), 2)
        rows[depth] = per_step
        timer.seconds.clear()
        print(f"[profile] {mode} depth {depth}: {per_step['total']:.1f} ms per step", file=sys.stderr, flush=True)
    return rows


def main():
    args = get_parser().parse_args()
    modes = args.modes.split(",")
    check_modes(modes, args.teacher, None if args.dump_dir is None else [args.dump_dir],
                args.frozen_teacher_cnn, "--modes")
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "config": str(args.config),
               "frozen_teacher_cnn": args.frozen_teacher_cnn,
               "device": "cuda" if args.ngpu > 0 else "cpu", "steps": args.steps, "modes": {}}
    for mode in modes:
        results["modes"][mode] = profile_mode(args, mode)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{args.name}_profile.json"
    atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    print(f"{'ms per step':<16}" + "".join(f"{p:>11}" for p in PARTS + ("total",)))
    for mode, rows in results["modes"].items():
        for depth, row in rows.items():
            print(f"{mode + ' d=' + str(depth):<16}" + "".join(f"{row[p]:>11.1f}" for p in PARTS + ("total",)))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
