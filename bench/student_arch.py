#!/usr/bin/env python3
"""The `espnet` and `hubert` students side by side, with the seed-to-seed noise to read them by.

For each student config and each seed, one `stacking_speed.py` invocation (dumped targets,
`none` first and again last, interleaved EQL between: same data, teacher, updates and seed for
both students), then per student: the mean and range over seeds of `none`'s and interleaved EQL's
final validation loss, of EQL's loss gap to `none`, and of EQL's speed-up over `none` (each
seed's speed-up is against the mean of its two `none` runs, whose difference is the machine's
drift). The noise stated is the range over seeds; a difference between the students smaller
than it is not a difference.

The bench's default setting (after bench/prepare_teacher.sh has prepared the 6 x 128 teacher
and its dump under bench/work/teacher_6x128):
    tools/venv/bin/python bench/student_arch.py
Writes bench/results/<name>_<student>_seed<k>.json per run, bench/results/<name>.json (the
summary) and prints the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet2_stacking.data.atomic import atomic_write_text

BENCH = Path(__file__).resolve().parent
STUDENTS = {"espnet": BENCH / "conf/distill_6x64_from_6x128.yaml",
            "hubert": BENCH / "conf/distill_6x64_from_6x128_hubert.yaml"}
PREP = Path("bench/work/teacher_6x128")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", default=",".join(STUDENTS), help="Which of espnet, hubert")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data_dir", type=Path, default=Path("egs2/demo/distill1/data"))
    p.add_argument("--dump_dir", type=Path, default=PREP / "dump")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--curve_points", type=int, default=6)
    p.add_argument("--frozen_teacher_cnn", type=str2bool, default=True,
                   help="The bench's default setting: the student's CNN is the teacher's, frozen")
    p.add_argument("--name", default="student_arch")
    return p


def spread(values: list, digits: int = 5):
    """Mean, min, max and range over seeds (None entries, runs without the number, left out;
    None when nothing is left)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "range": round(max(values) - min(values), digits),
            "values": [round(v, digits) for v in values]}


def main():
    args = get_parser().parse_args()
    students, seeds = args.students.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = [s for s in students if s not in STUDENTS]
    if unknown:
        raise SystemExit(f"--students: unknown {unknown}; choose from {sorted(STUDENTS)}")
    if not (args.dump_dir / "train" / "meta.json").is_file():
        raise SystemExit(f"{args.dump_dir}/train/meta.json: no dump there; prepare it with "
                         "bench/prepare_teacher.sh")
    start = time.perf_counter()
    summary = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "updates": args.updates,
               "seeds": seeds, "frozen_teacher_cnn": args.frozen_teacher_cnn, "students": {}}
    for student in students:
        per_seed = []
        for seed in seeds:
            name = f"{args.name}_{student}_seed{seed}"
            print(f"[bench] {student} seed {seed} ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, str(BENCH / "stacking_speed.py"),
                            "--base_config", str(STUDENTS[student]), "--data_dir", str(args.data_dir),
                            "--dump_dir", str(args.dump_dir), "--teacher_modes", "dump",
                            "--methods", "none,interleaved_eql", "--updates", str(args.updates),
                            "--curve_points", str(args.curve_points), "--seed", str(seed),
                            "--frozen_teacher_cnn", str(args.frozen_teacher_cnn).lower(),
                            "--name", name], check=True)
            per_seed.append(json.loads((Path("bench/results") / f"{name}.json").read_text()))
        none = [r["runs"]["dump/none"]["valid_loss"] for r in per_seed]
        eql = [r["runs"]["dump/interleaved_eql"]["valid_loss"] for r in per_seed]
        summary["students"][student] = {
            "config": str(STUDENTS[student].relative_to(BENCH.parent)),
            "none_valid_loss": spread(none),
            "eql_valid_loss": spread(eql),
            "eql_loss_vs_none": spread([e / n for e, n in zip(eql, none)]),
            "eql_speedup": spread([r["runs"]["dump/interleaved_eql"]["speedup"] for r in per_seed]),
            "eql_ideal_speedup": spread([r["runs"]["dump/interleaved_eql"]["ideal_speedup"] for r in per_seed]),
            "none_drift": spread([r["dump_none_drift"] for r in per_seed]),
            "none_train_seconds": spread([r["runs"]["dump/none"]["train_seconds"] for r in per_seed]),
        }
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    out = Path("bench/results") / f"{args.name}.json"
    atomic_write_text(out, json.dumps(summary, indent=1) + "\n")
    print(f"{'student':<8}{'none loss':>22}{'EQL loss':>22}{'EQL/none':>22}{'speed-up':>22}{'drift':>18}")
    fmt = lambda s: f"{s['mean']:.4f} [{s['min']:.4f},{s['max']:.4f}]"  # noqa: E731
    for student, s in summary["students"].items():
        print(f"{student:<8}{fmt(s['none_valid_loss']):>22}{fmt(s['eql_valid_loss']):>22}"
              f"{fmt(s['eql_loss_vs_none']):>22}{fmt(s['eql_speedup']):>22}{fmt(s['none_drift']):>18}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
