#!/usr/bin/env python3
"""How much faster is stacking, at what cost in quality? One invocation, same data, seed and
number of updates for every run.

Example (after the demo recipe's stages 0-2, `./run.sh --stop_stage 2`):
    D=egs2/demo/distill1
    tools/venv/bin/python bench/stacking_speed.py --base_config $D/conf/distill_interleaved_eql.yaml \
        --data_dir $D/data --dump_dir $D/dump --teacher $D/exp/teacher/model.pth \
        --updates 150 --name demo_cpu

Runs `none` (full depth from the start), interleaved EQL and PROP-1, gradual EQL and MIDAS EQL,
each with dumped targets and with the online teacher (--teacher_modes). For each run:
- train seconds (the trainer's own clock: data loading, forward, backward, optimizer; not
  start-up or validation) and the speed-up against `none` in the same teacher mode;
- the ideal speed-up: 1 / ((1 - f) + f r), r the schedule's share of layer-updates (62.5 % for
  EQL 3/6/9/12) and f the measured share of a full-depth step spent in the growing layers
  (a line fitted to seconds per update against depth over the stacking runs' stages);
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

METHODS = {
    "none": dict(stacking_method="none", alignment_mode="l2l_proportional", full_depth_only=True),
    "interleaved_eql": dict(stacking_method="interleaved", stacking_schedule="eql", alignment_mode="l2l"),
    "interleaved_prop1": dict(stacking_method="interleaved", stacking_schedule="prop:1", alignment_mode="l2l"),
    "gradual_eql": dict(stacking_method="gradual", stacking_schedule="eql", alignment_mode="pred"),
    "midas_eql": dict(stacking_method="midas", stacking_schedule="eql", alignment_mode="pred"),
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--name", default="bench")
    p.add_argument("--work_dir", type=Path, default=Path("bench/work"))
    return p


def run_config(base: dict, method: str, updates: int, seed: int, points: int = 1) -> dict:
    conf = dict(base)
    spec = dict(METHODS[method])
    if spec.pop("full_depth_only", False):
        conf["stacking_depths"] = [conf["stacking_depths"][-1]]
    conf.update(spec)
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
    for e, s in stats.items():
        elapsed += epoch_seconds(s["train"])
        curve.append((round(elapsed, 3), float(s["valid"]["loss"])))
    profile = {k: round(sum(float(s["train"][k]) for s in stats.values()) / len(stats), 5)
               for k in STEP_PARTS}
    return curve, curve[-1][1], profile


def train(conf: dict, args, mode: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.in.yaml").write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", "--config", str(out / "config.in.yaml"),
           "--output_dir", str(out / "exp"), "--ngpu", str(args.ngpu), "--use_matplotlib", "false"]
    for tag, split in (("train", "train"), ("valid", "dev")):
        d = args.data_dir / split
        cmd += [f"--{tag}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound", f"--{tag}_shape_file", f"{d}/utt2num_samples"]
        if mode == "dump":
            for t in conf["target_layers"]:
                cmd += [f"--{tag}_data_path_and_name_and_type", f"{args.dump_dir}/{split}/layer_{t}.scp,target_{t},npy"]
    if mode == "online":
        cmd += ["--teacher", args.teacher]
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
        ax.set(title=f"{mode} targets", xlabel="training seconds", ylabel="validation loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{results['updates']} updates per run on {results['machine']}")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def layer_share(runs: list, full_depth: int) -> float:
    """f: share of a full-depth update's time spent in the growing layers, from a
    least-squares line through (depth, seconds per update) of every stacking stage."""
    points = []
    for r in runs:
        lengths = r["stage_updates"]
        for depth, secs, n in zip(r["stage_depths"], r["stage_seconds"], lengths):
            points.append((depth, secs / n))
    if len({d for d, _ in points}) < 2:
        return float("nan")
    n = len(points)
    mx = sum(d for d, _ in points) / n
    my = sum(t for _, t in points) / n
    slope = sum((d - mx) * (t - my) for d, t in points) / sum((d - mx) ** 2 for d, _ in points)
    fixed = my - slope * mx
    return slope * full_depth / (fixed + slope * full_depth)


def main():
    args = get_parser().parse_args()
    from espnet2_stacking.stacking import plan_stacking

    base = yaml.safe_load(args.base_config.read_text())
    lengths = [int(line.split()[1]) for line in
               (args.data_dir / "train" / "utt2num_samples").read_text().splitlines()]
    crop = base.get("crop_max_samples") or max(lengths)
    # audio one update sees: batch_size utterances, each cut to at most crop_max_samples
    update_hours = base["batch_size"] * sum(min(n, crop) for n in lengths) / len(lengths) / 16000 / 3600
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "updates": args.updates,
               "base_config": str(args.base_config), "runs": {}}
    for mode in args.teacher_modes.split(","):
        for method in args.methods.split(","):
            conf = run_config(base, method, args.updates, args.seed, args.curve_points)
            print(f"[bench] {mode} {method} ...", file=sys.stderr, flush=True)
            r = train(conf, args, mode, args.work_dir / args.name / f"{mode}_{method}")
            plan = plan_stacking(conf["stacking_method"], conf["stacking_depths"],
                                 schedule=conf.get("stacking_schedule", "eql"), total_updates=args.updates,
                                 mode=conf["alignment_mode"], targets=conf["target_layers"],
                                 teacher_layers=conf["teacher_num_layers"],
                                 block_size=conf.get("stacking_block_size"))
            r["stage_updates"] = list(plan.stage_lengths)
            full = conf["stacking_depths"][-1]
            r["layer_ratio"] = sum(n * d for n, d in zip(plan.stage_lengths, plan.depths)) / (args.updates * full)
            results["runs"][f"{mode}/{method}"] = r
    for mode in args.teacher_modes.split(","):
        runs = {k.split("/")[1]: v for k, v in results["runs"].items() if k.startswith(mode + "/")}
        stacking = [v for m, v in runs.items() if m != "none"]
        f = layer_share(stacking, base["stacking_depths"][-1])
        results[f"{mode}_layer_share"] = round(f, 4)
        for m, v in runs.items():
            v["speedup"] = round(runs["none"]["train_seconds"] / v["train_seconds"], 3)
            v["ideal_speedup"] = round(1 / ((1 - f) + f * v["layer_ratio"]), 3)
            v["share_of_ideal"] = round((v["speedup"] - 1) / (v["ideal_speedup"] - 1), 3) if v["ideal_speedup"] > 1 else None
            v["audio_hours_per_hour"] = round(update_hours * v["updates"] / (v["train_seconds"] / 3600), 1)
    out = Path("bench/results") / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"{'mode/method':<26}{'train s':>9}{'speed-up':>9}{'ideal':>7}{'of ideal':>9}{'valid loss':>11}")
    for k, v in results["runs"].items():
        print(f"{k:<26}{v['train_seconds']:>9.1f}{v['speedup']:>9.3f}{v['ideal_speedup']:>7.3f}"
              f"{'' if v['share_of_ideal'] is None else v['share_of_ideal']:>9}{v['valid_loss']:>11.4f}")
    print(f"\n{'ms per update':<26}{'data':>9}{'forward':>9}{'backward':>9}{'optim':>8}")
    for k, v in results["runs"].items():
        p = v["step_profile"]
        print(f"{k:<26}" + "".join(f"{1000 * p[part]:>{w}.1f}" for part, w in zip(STEP_PARTS, (9, 9, 9, 8))))
    print(f"-> {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
