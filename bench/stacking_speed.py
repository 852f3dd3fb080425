#!/usr/bin/env python3
"""How much faster is stacking, at what cost in quality? One invocation, same data, seed and
number of updates for every run.

The bench's default setting, from a fresh clone: bench/run_cpu.sh (it prepares the teacher
and the dump, then runs this, layer_similarity.py and step_profile.py). By hand, after the demo
recipe's stages 0-2 (`./run.sh --stop_stage 2`):
    D=egs2/demo/distill1
    tools/venv/bin/python bench/stacking_speed.py --base_config $D/conf/distill_interleaved_eql.yaml \
        --data_dir $D/data --dump_dir $D/dump --teacher $D/exp/teacher/model.pth \
        --updates 150 --name demo_cpu

Runs `none` (full depth from the start), interleaved EQL and PROP-1, gradual EQL and MIDAS EQL,
each with dumped targets and with the online teacher (--teacher_modes). For each run:
- train seconds (the trainer's own clock: data loading, forward, backward, optimizer; not
  start-up or validation) and the speed-up against `none` in the same teacher mode (`none`
  runs first and again last, --bracket_none: against the mean of the two, their difference
  is the machine's drift, printed);
- the ideal speed-up: 1 / ((1 - f) + f r), r the schedule's share of layer-updates (62.5 % for
  EQL 3/6/9/12) and f the measured share of a full-depth step spent in the growing layers
  (fitted to the time of each stacking epoch over the same epoch of `none`, same batches);
- the final validation loss of the full-depth student (ESPnet's valid loss, last epoch);
- hours of audio processed per hour of training;
- where a step's time goes (ESPnet's own per-iteration timers: data loading, forward
  (the online teacher runs inside it), backward, optimizer step), averaged over the run.
Each run is split into --curve_points epochs, each ending with a validation pass, for the curve
of validation loss against training time. Writes bench/results/<name>.json and <name>.png
(one panel per teacher mode, one curve per method) and prints the tables.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from espnet2.utils.types import str2bool

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_output, atomic_write_text

# each run's stacking_conf over the base config's (`none` trains at the base's last depth only)
METHODS = {
    "none": dict(method="none", mode="l2l_proportional"),
    "interleaved_eql": dict(method="interleaved", schedule="eql", mode="l2l"),
    "interleaved_prop1": dict(method="interleaved", schedule="prop:1", mode="l2l"),
    "gradual_eql": dict(method="gradual", schedule="eql", mode="pred"),
    "midas_eql": dict(method="midas", schedule="eql", mode="pred"),
}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_config", type=Path, required=True, help="A distillation YAML to vary")
    p.add_argument("--data_dir", type=Path, required=True, help="Holds train/ and dev/")
    p.add_argument("--dump_dir", type=Path, default=None, help="Holds train/ and dev/ dumps")
    p.add_argument("--teacher", type=str, default=None, help="Teacher spec for online runs")
    p.add_argument("--teacher_modes", default="dump,online")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--updates", type=int, default=150, help="Updates per run")
    p.add_argument("--curve_points", type=int, default=5,
                   help="Validation passes per run (epochs of updates / curve_points updates)")
    p.add_argument("--frozen_teacher_cnn", type=str2bool, default=False,
                   help="Every run's CNN is the teacher's, frozen (--student_cnn teacher_frozen): "
                        "no CNN backward, and the student does not run it: the dumped-target "
                        "runs read its output from the dump (cnn.scp: dump_teacher_feats "
                        "--cnn_features true; the teacher is the one the dump's meta.json "
                        "names), the online runs take it from the teacher's pass")
    p.add_argument("--bracket_none", type=str2bool, default=True,
                   help="Train none again after the other methods: speed-ups are against the "
                        "mean of its two runs, and their difference shows the machine's drift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--name", default="bench")
    p.add_argument("--work_dir", type=Path, default=Path("bench/work"))
    return p


def run_config(base: dict, method: str, updates: int, seed: int, points: int = 1) -> dict:
    """The base config for one run: the method's stacking_conf over the base's, resolved (every
    key of plan_stacking's, defaults filled), and `updates` in `points` epochs."""
    from espnet2_stacking.tasks.distill_config import RENAMED, refuse_renamed, stacking_kwargs

    refuse_renamed([name for name in RENAMED if name in base], where="--base_config: ")
    conf = dict(base)
    stacking = stacking_kwargs({**(base.get("stacking_conf") or {}), **METHODS[method]})
    if stacking["method"] == "none":  # full depth from the start
        stacking["depths"] = stacking["depths"][-1:]
    conf["stacking_conf"] = stacking
    if updates % points:
        raise SystemExit(f"--updates {updates} must be a multiple of --curve_points {points}")
    conf.update(num_iters_per_epoch=updates // points, max_epoch=points, seed=seed)
    return conf


STEP_PARTS = ("iter_time", "forward_time", "backward_time", "optim_step_time")


def reporter_stats(exp: Path) -> dict:
    """ESPnet's per-epoch statistics of our own run (checkpoint.pth's reporter state)."""
    import torch

    # our own run's checkpoint: its reporter state holds numpy scalars, refused by weights_only
    reporter = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]
    return {e: reporter["stats"][e] for e in sorted(reporter["stats"])}


def epoch_seconds(train_stats: dict) -> float:
    value = train_stats["time"]
    return float(value["__timedelta_seconds__"] if isinstance(value, dict) else value)


def curve_and_profile(exp: Path):
    """[(cumulative train seconds, valid loss)] per epoch, the last valid loss, and the mean
    seconds per update of each part of a step (epochs weighted equally: same length)."""
    stats = reporter_stats(exp)
    curve, elapsed = [], 0.0
    for s in stats.values():
        elapsed += epoch_seconds(s["train"])
        curve.append((round(elapsed, 3), float(s["valid"]["loss"])))
    profile = {k: round(sum(float(s["train"][k]) for s in stats.values()) / len(stats), 5)
               for k in STEP_PARTS}
    return curve, curve[-1][1], profile


def distill_args(splits: dict, mode: str, teacher, frozen_cnn: bool) -> list:
    """distill_train's data and teacher options (shared with step_profile.py).

    splits: {"train" or "valid": (Kaldi data dir, its dump dir)}. In dump mode the task reads
    each dump dir (its meta.json, the config's layer lists and, with frozen_cnn, the frozen CNN's
    output when dumped); in online mode the teacher runs inside training (and, with frozen_cnn,
    its pass gives the CNN output).
    """
    if mode not in ("dump", "online"):
        raise SystemExit(f"teacher mode must be dump or online, got '{mode}'")
    args = []
    for tag, (data, dump) in splits.items():
        args += [f"--{tag}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{tag}_shape_file", f"{data}/utt2num_samples"]
        if mode == "dump":
            args += [f"--{tag}_dump_dir", str(dump)]
    if mode == "online":
        args += ["--teacher", teacher]
    if frozen_cnn:
        args += ["--student_cnn", "teacher_frozen"]
    return args


def check_dumps(dump_dirs: list, teacher, frozen_cnn: bool) -> None:
    """The dumps against the bench's options (shared with the other scripts): the dumped-target
    runs distil the teacher a dump's meta.json names (and, with frozen_cnn, take its CNN), which
    must be --teacher when given (the online runs' teacher); a dump without the CNN's output
    leaves the frozen CNN to run every step (warned)."""
    from espnet2_stacking.tasks.distill import read_dump_meta, same_teacher

    for dump in dump_dirs:
        meta = read_dump_meta(dump)
        if teacher is not None and not same_teacher(meta["teacher"], teacher):
            raise SystemExit(f"{dump} holds the states of {meta['teacher']} ({dump}/meta.json), "
                             f"not of --teacher {teacher}")
        if frozen_cnn and not meta.get("cnn_features"):
            print(f"[bench] WARNING: {dump} holds no CNN output (dump_teacher_feats --cnn_features "
                  "true adds it): the dumped-target runs compute the frozen CNN every step",
                  file=sys.stderr, flush=True)


def check_modes(modes: list, teacher, dump_dirs, frozen_cnn: bool, option: str) -> None:
    """The teacher modes against the options that feed them (shared with step_profile.py): an
    online run needs --teacher, a dumped one --dump_dir (dump_dirs None when not given), whose
    dumps check_dumps then checks."""
    if teacher is None and "online" in modes:
        raise SystemExit(f"--teacher is needed for {option} online")
    if "dump" in modes:
        if dump_dirs is None:
            raise SystemExit(f"{option} dump needs --dump_dir")
        check_dumps(dump_dirs, teacher, frozen_cnn)


def audio_hours_per_update(conf: dict, data_dir: Path) -> float:
    """Hours of audio one update sees: batch_size utterances of data_dir (their mean length),
    each cut to at most crop_max_samples."""
    lengths = [int(line.split()[1]) for line in (data_dir / "utt2num_samples").read_text().splitlines()]
    crop = conf.get("crop_max_samples") or max(lengths)
    return conf["batch_size"] * sum(min(n, crop) for n in lengths) / len(lengths) / SAMPLE_RATE / 3600


def run_plan(conf: dict, updates: int):
    """The stacking plan of a run_config's config over `updates` updates."""
    from espnet2_stacking.stacking import plan_stacking

    kwargs = dict(conf["stacking_conf"])
    return plan_stacking(kwargs.pop("method"), kwargs.pop("depths"), **kwargs,
                         teacher_layers=conf["teacher_num_layers"], total_updates=updates)


def train(conf: dict, args, mode: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.in.yaml").write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", "--config", str(out / "config.in.yaml"),
           "--output_dir", str(out / "exp"), "--ngpu", str(args.ngpu), "--use_matplotlib", "false"]
    splits = {tag: (args.data_dir / split, None if args.dump_dir is None else args.dump_dir / split)
              for tag, split in (("train", "train"), ("valid", "dev"))}
    cmd += distill_args(splits, mode, args.teacher, args.frozen_teacher_cnn)
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{out}: training failed:\n{res.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "exp" / "stacking.jsonl").read_text().splitlines()]
    summary = log[-1]["summary"]
    curve, last_loss, profile = curve_and_profile(out / "exp")
    return {"wall_seconds": round(wall, 2), "train_seconds": summary["total_seconds"],
            "stage_seconds": summary["stage_seconds"], "stage_depths": summary["stage_depths"],
            "valid_loss": last_loss, "updates": summary["updates"], "curve": curve,
            "epoch_seconds": [round(b - a, 3) for a, b in zip([0.0] + [c[0] for c in curve], [c[0] for c in curve])],
            "step_profile": profile}


def plot(results: dict, path: Path) -> None:
    """Validation loss against training seconds, one panel per teacher mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({k.split("/")[0] for k in results["runs"]})
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for key, run in results["runs"].items():
            if key.startswith(mode + "/"):
                xs, ys = zip(*run["curve"])
                ax.plot(xs, ys, marker="o", label=key.split("/")[1])
        ax.set(title=f"{mode} targets", xlabel="training seconds", ylabel="validation loss", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    frozen = ", the teacher's CNN frozen" if results.get("frozen_teacher_cnn") else ""
    fig.suptitle(f"{results['updates']} updates per run on {results['machine']}{frozen}")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def epoch_depths(plan, epochs: int) -> list:
    """The update-weighted mean depth of each epoch (a growth may fall inside one)."""
    per_update = [d for n, d in zip(plan.stage_lengths, plan.depths) for _ in range(n)]
    size = len(per_update) // epochs
    return [sum(per_update[e * size:(e + 1) * size]) / size for e in range(epochs)]


def layer_ratio(plan) -> float:
    """r: the plan's layer-updates over those of the same updates at full depth."""
    updates = sum(plan.stage_lengths)
    return sum(n * d for n, d in zip(plan.stage_lengths, plan.depths)) / (updates * plan.depths[-1])


def layer_share(runs: list, reference: list, full_depth: int) -> float:
    """f: share of a full-depth update's time spent in the growing layers.

    Epoch e of every run trains on the same batches (same seed), so the ratio of a stacking
    run's epoch time to `none`'s epoch time is (1 - f) + f * depth_e / full_depth, whatever
    those batches cost; f is the least-squares fit of that line over every stacking epoch.
    (Fitting seconds per update against depth across stages instead mixes in how long each
    stage's utterances are.)"""
    num = den = 0.0
    for r in runs:
        for secs, ref, depth in zip(r["epoch_seconds"], reference, r["epoch_depths"]):
            x = depth / full_depth - 1
            num += (secs / ref - 1) * x
            den += x * x
    return num / den if den else float("nan")


def main():
    args = get_parser().parse_args()
    from espnet2_stacking.tasks.distill_config import read_distill_config

    modes = args.teacher_modes.split(",")
    dumps = None if args.dump_dir is None else [args.dump_dir / "train", args.dump_dir / "dev"]
    check_modes(modes, args.teacher, dumps, args.frozen_teacher_cnn, "--teacher_modes")
    base = read_distill_config(args.base_config)
    update_hours = audio_hours_per_update(base, args.data_dir / "train")
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "updates": args.updates,
               "base_config": str(args.base_config), "frozen_teacher_cnn": args.frozen_teacher_cnn,
               "runs": {}}
    methods = args.methods.split(",")
    if "none" not in methods:
        raise SystemExit("--methods must include none: every speed-up is measured against it")
    # none first and, to see the machine drift, once more at the end: speed-ups are against
    # the mean of the two
    order = ["none"] + [m for m in methods if m != "none"] + (["none_again"] if args.bracket_none else [])
    for mode in modes:
        for key in order:
            method = "none" if key == "none_again" else key
            conf = run_config(base, method, args.updates, args.seed, args.curve_points)
            print(f"[bench] {mode} {key} ...", file=sys.stderr, flush=True)
            r = train(conf, args, mode, args.work_dir / args.name / f"{mode}_{key}")
            plan = run_plan(conf, args.updates)
            r["stage_updates"] = list(plan.stage_lengths)
            r["epoch_depths"] = epoch_depths(plan, args.curve_points)
            r["layer_ratio"] = layer_ratio(plan)
            results["runs"][f"{mode}/{key}"] = r
    for mode in modes:
        runs = {k.split("/")[1]: v for k, v in results["runs"].items() if k.startswith(mode + "/")}
        refs = [runs[k] for k in ("none", "none_again") if k in runs]
        ref_seconds = sum(r["train_seconds"] for r in refs) / len(refs)
        ref_epochs = [sum(e) / len(refs) for e in zip(*(r["epoch_seconds"] for r in refs))]
        if len(refs) == 2:
            drift = (refs[1]["train_seconds"] - refs[0]["train_seconds"]) / ref_seconds
            results[f"{mode}_none_drift"] = round(drift, 4)
        stacking = [v for m, v in runs.items() if m not in ("none", "none_again")]
        f = layer_share(stacking, ref_epochs, base["stacking_conf"]["depths"][-1])
        results[f"{mode}_layer_share"] = round(f, 4)
        for v in runs.values():
            v["speedup"] = round(ref_seconds / v["train_seconds"], 3)
            v["ideal_speedup"] = round(1 / ((1 - f) + f * v["layer_ratio"]), 3)
            v["share_of_ideal"] = (round((v["speedup"] - 1) / (v["ideal_speedup"] - 1), 3)
                                   if v["ideal_speedup"] > 1 else None)
            v["audio_hours_per_hour"] = round(update_hours * v["updates"] / (v["train_seconds"] / 3600), 1)
    out = Path("bench/results") / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"{'mode/method':<26}{'train s':>9}{'speed-up':>9}{'ideal':>7}{'of ideal':>9}{'valid loss':>11}")
    for k, v in results["runs"].items():
        print(f"{k:<26}{v['train_seconds']:>9.1f}{v['speedup']:>9.3f}{v['ideal_speedup']:>7.3f}"
              f"{'' if v['share_of_ideal'] is None else v['share_of_ideal']:>9}{v['valid_loss']:>11.4f}")
    print(f"\n{'ms per update':<26}{'data':>9}{'forward':>9}{'backward':>9}{'optim':>8}")
    for k, v in results["runs"].items():
        p = v["step_profile"]
        print(f"{k:<26}" + "".join(f"{1000 * p[part]:>{w}.1f}" for part, w in zip(STEP_PARTS, (9, 9, 9, 8))))
    for mode in modes:
        drift = results.get(f"{mode}_none_drift")
        print(f"{mode}: layer share f = {results[f'{mode}_layer_share']}"
              + ("" if drift is None else f", none's second run {100 * drift:+.1f} % against its first"))
    print(f"-> {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
