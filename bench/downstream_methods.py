#!/usr/bin/env python3
"""The paper's method comparison on downstream tasks: does interleaved stacking keep the
downstream quality of full-depth distillation while gradual and MIDAS stacking lose some?

On the bench's default setting (the 6 x 128 teacher and its dump, bench/prepare_teacher.sh, or
another teacher's dump of the demo corpus, --dump_dir, with a --base_config for its width; the
6 x 64 student of conf/distill_6x64_from_6x128.yaml grown 2 -> 4 -> 6 in 300 updates, the
teacher's CNN frozen, each growth a fresh AdamW), for each distillation seed:
  1. stacking_speed.py distils one student per method from the dump (`none`, interleaved EQL
     and PROP-1, gradual EQL, MIDAS EQL: same data, seed and updates), timing each;
  2. export_student exports each;
then the demo recipe's stages 5-7 train the same SUPERB-style heads (PR: CTC over phones; SID:
mean-pooled classifier; conf/pr_demo.yaml, sid_demo.yaml) on every student, with FBANK as the
floor, and score them (RESULTS.md / RESULTS.json under bench/work/<name>/).
The table: per method, distillation seconds and speed-up over `none` (the seed's own `none`),
PR PER and SID accuracy, each the mean over seeds with its range (the noise to read
differences by). Writes bench/results/<name>.json and prints the table.
    tools/venv/bin/python bench/downstream_methods.py [--seeds 0,1] [--tasks pr,sid]
    # a longer-pretrained demo teacher (6 x 64), dumped with its CNN's output:
    tools/venv/bin/python bench/downstream_methods.py --dump_dir bench/work/teacher_t144/dump \
        --base_config egs2/demo/distill1/conf/distill_interleaved_eql.yaml --name downstream_methods_t144
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from student_arch import spread  # bench/ is the script's dir

from espnet2_stacking.data.atomic import atomic_write_text

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RECIPE = ROOT / "egs2/demo/distill1"
PREP = ROOT / "bench/work/teacher_6x128"
METHODS = ("none", "interleaved_eql", "interleaved_prop1", "gradual_eql", "midas_eql")
METRICS = {"pr": ("per", "test"), "sid": ("acc", "sid_test")}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1", help="Distillation seeds (the heads' seed is the configs')")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--tasks", default="pr,sid", help="Downstream tasks of the demo recipe: pr, sid")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--base_config", type=Path, default=BENCH / "conf/distill_6x64_from_6x128.yaml")
    p.add_argument("--dump_dir", type=Path, default=PREP / "dump",
                   help="Another teacher's dump (train/, dev/; dump_teacher_feats --cnn_features "
                        "true) of the demo corpus; its meta.json names the teacher. Default: the "
                        "bench's 6 x 128 teacher, prepared by bench/prepare_teacher.sh if missing")
    p.add_argument("--nj", type=int, default=2, help="Head trainings and decoding jobs at once")
    p.add_argument("--recipe_args", default="", help="More options for the recipe's stages 5-7")
    p.add_argument("--name", default="downstream_methods")
    return p


def upstream_name(method: str, seed: int) -> str:
    return f"{method}_seed{seed}"


def comparison(speed: dict, results: dict, methods, seeds, tasks) -> dict:
    """speed: seed -> stacking_speed.py's JSON; results: the recipe's RESULTS.json. Per method:
    distillation seconds, speed-up and each task's metric, over seeds."""
    scores = {(r["task"], r["upstream"]): r["scores"] for r in results["runs"]}

    def metric(task, upstream):
        name, test_set = METRICS[task]
        got = scores.get((task, upstream))
        if got is None:
            raise KeyError(f"RESULTS.json has no {task} run on upstream '{upstream}'")
        return got[test_set][name]

    table = {}
    for m in methods:
        runs = [speed[s]["runs"][f"dump/{m}"] for s in seeds]
        table[m] = {"distill_seconds": spread([r["train_seconds"] for r in runs]),
                    "speedup": spread([r["speedup"] for r in runs]),
                    "valid_loss": spread([r["valid_loss"] for r in runs])}
        for t in tasks:
            table[m][t] = spread([metric(t, upstream_name(m, s)) for s in seeds])
    if ("pr", "fbank") in scores or ("sid", "fbank") in scores:
        table["fbank"] = {t: spread([metric(t, "fbank")]) for t in tasks}
    return table


def run(cmd, log: Path):
    print(f"[bench] {' '.join(map(str, cmd))}\n        (log: {log})", file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        res = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"failed (exit {res.returncode}): see {log}")


def main():
    args = get_parser().parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods, tasks = args.methods.split(","), args.tasks.split(",")
    bad = [m for m in methods if m not in METHODS] + [t for t in tasks if t not in METRICS]
    if bad:
        raise SystemExit(f"unknown {bad}: --methods from {METHODS}, --tasks from {tuple(METRICS)}")
    if "none" not in methods:
        raise SystemExit("--methods must include none: every speed-up is measured against it")
    work = ROOT / "bench/work" / args.name
    start = time.perf_counter()
    times = {}
    if args.dump_dir != PREP / "dump" and not (args.dump_dir / "train/meta.json").is_file():
        raise SystemExit(f"--dump_dir {args.dump_dir}: no train/meta.json (dump_teacher_feats)")
    if not (args.dump_dir / "train/meta.json").is_file():
        t0 = time.perf_counter()
        run([BENCH / "prepare_teacher.sh", "--nj", args.nj], work / "logs/prepare.log")
        times["prepare"] = round(time.perf_counter() - t0, 1)
    speed, upstreams = {}, []
    t0 = time.perf_counter()
    for seed in seeds:
        name = f"{args.name}_seed{seed}"
        run([sys.executable, BENCH / "stacking_speed.py", "--base_config", args.base_config,
             "--data_dir", RECIPE / "data", "--dump_dir", args.dump_dir, "--teacher_modes", "dump",
             "--methods", ",".join(methods), "--updates", args.updates, "--curve_points", 3,
             "--bracket_none", "false", "--frozen_teacher_cnn", "true", "--seed", seed,
             "--name", name], work / f"logs/distill_seed{seed}.log")
        speed[seed] = json.loads((ROOT / "bench/results" / f"{name}.json").read_text())
        for m in methods:
            out = work / f"seed{seed}/student_{m}"
            run([sys.executable, "-m", "espnet2_stacking.bin.export_student",
                 "--distill_dir", ROOT / "bench/work" / name / f"dump_{m}/exp", "--out_dir", out],
                work / f"logs/export_seed{seed}_{m}.log")
            upstreams.append(f"{upstream_name(m, seed)}={out / 'model.pth'}")
    times["distill_and_export"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    run([RECIPE / "run.sh", "--stage", 5, "--stop_stage", 7, "--downstream_tasks", " ".join(tasks),
         "--upstreams", " ".join(upstreams + ["fbank"]), "--expdir", work / "exp",
         "--dumpdir", work / "dump",  # the students' dumped states (--downstream_feats dump)
         "--results", work / "RESULTS.md", "--asr_nj", args.nj, "--nj", args.nj,
         *shlex.split(args.recipe_args)], work / "logs/downstream.log")
    times["downstream"] = round(time.perf_counter() - t0, 1)
    results = json.loads((work / "RESULTS.json").read_text())
    table = comparison(speed, results, methods, seeds, tasks)
    summary = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "updates": args.updates,
               "seeds": seeds, "tasks": tasks, "base_config": str(args.base_config.relative_to(ROOT)),
               "teacher": json.loads((args.dump_dir / "train/meta.json").read_text())["teacher"],
               "methods": table, "seconds": times, "wall_seconds": round(time.perf_counter() - start, 1)}
    out = ROOT / "bench/results" / f"{args.name}.json"
    atomic_write_text(out, json.dumps(summary, indent=1) + "\n")
    print(render(table, tasks))
    print(f"-> {out}")


def render(table: dict, tasks) -> str:
    label = {"pr": "PR PER (%)", "sid": "SID accuracy (%)"}
    cell = lambda s: "-" if s is None else f"{s['mean']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"  # noqa: E731
    lines = ["| method | distillation s | speed-up | valid loss | " + " | ".join(label[t] for t in tasks) + " |",
             "|---|---|---|---|" + "---|" * len(tasks)]
    for m, row in table.items():
        lines.append(f"| {m} | " + " | ".join(cell(row.get(k)) for k in
                                             ("distill_seconds", "speedup", "valid_loss", *tasks)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
