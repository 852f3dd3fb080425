"""What the optimizer state at a growth does to interleaved EQL's final loss, against `none`.

For every setting (each of --updates x --lrs x --beta2s), trains `none` once and interleaved EQL
once per rule (--rules: copy, reset, reset_all; see --optimizer_state_rule), with dumped targets
and the bench's other options, and reports each final validation loss and its gap to `none`'s.
Writes bench/results/<name>.json and prints a table. Losses only: the runs are seeded, so their
losses do not depend on what else the machine is doing; speed is stacking_speed.py's job.

After bench/run_cpu.sh (which prepares the teacher and its dump), the README's sweep:
    python bench/optimizer_rules.py --base_config bench/conf/distill_6x64_from_6x128.yaml \
        --data_dir egs2/demo/distill1/data --dump_dir bench/work/teacher_6x128/dump \
        --teacher bench/work/teacher_6x128/exp/teacher/model.pth --frozen_teacher_cnn true \
        --lrs 1e-3,2e-3,4e-3,8e-3 --name optimizer_rules_lr
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

from espnet2.utils.types import str2bool
from stacking_speed import check_dumps, run_config, train  # bench/ is the script's directory

from espnet2_stacking.data.atomic import atomic_write_text

RULES = ("copy", "reset", "reset_all")
ADAMW_BETAS = [0.9, 0.999]  # torch.optim.AdamW's default


def floats(text: str) -> list:
    return [float(v) for v in text.split(",")]


def rule_config(base: dict, method: str, rule, updates: int, lr: float, beta2: float, seed: int,
                points: int) -> dict:
    """The base config for one run: the method's (stacking_conf and depths, as stacking_speed.py
    runs it), at this peak lr and AdamW beta2 (beta1 kept), with this optimizer state rule
    (None: the base's, for `none`, which never grows)."""
    conf = run_config(base, method, updates, seed, points)
    optim_conf = base.get("optim_conf", {})
    conf["optim_conf"] = dict(optim_conf, lr=lr, betas=[optim_conf.get("betas", ADAMW_BETAS)[0], beta2])
    if rule is not None:
        conf["optimizer_state_rule"] = rule
    return conf


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_config", type=Path, required=True, help="A distillation YAML to vary")
    p.add_argument("--data_dir", type=Path, required=True, help="Holds train/ and dev/")
    p.add_argument("--dump_dir", type=Path, required=True, help="Holds train/ and dev/ dumps")
    p.add_argument("--teacher", type=str, default=None,
                   help="Optional: the teacher the dump was made with, checked against the "
                        "dump's meta.json (the runs take their teacher, and with "
                        "--frozen_teacher_cnn its CNN, from the dump)")
    p.add_argument("--rules", default=",".join(RULES), help="Optimizer state rules to compare")
    p.add_argument("--updates", default="300", help="Updates per run (comma-separated: each)")
    p.add_argument("--lrs", default=None, help="Peak learning rates (default: the config's)")
    p.add_argument("--beta2s", default=None, help="AdamW beta2 values (default: the config's)")
    p.add_argument("--curve_points", type=int, default=6, help="Validation passes per run")
    p.add_argument("--frozen_teacher_cnn", type=str2bool, default=False,
                   help="As stacking_speed.py's: the teacher's CNN, frozen (--student_cnn "
                        "teacher_frozen; its output read from the dump's cnn.scp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--name", default="optimizer_rules")
    p.add_argument("--work_dir", type=Path, default=Path("bench/work"))
    return p


def main():
    from espnet2_stacking.tasks.distill_config import read_distill_config

    args = get_parser().parse_args()
    rules = args.rules.split(",")
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise SystemExit(f"--rules: unknown {unknown}; choose from {list(RULES)}")
    check_dumps([args.dump_dir / "train", args.dump_dir / "dev"], args.teacher, args.frozen_teacher_cnn)
    base = read_distill_config(args.base_config)
    optim_conf = base.get("optim_conf", {})
    lrs = floats(args.lrs) if args.lrs else [optim_conf["lr"]]
    beta2s = floats(args.beta2s) if args.beta2s else [optim_conf.get("betas", ADAMW_BETAS)[1]]
    results = {"base_config": str(args.base_config), "frozen_teacher_cnn": args.frozen_teacher_cnn,
               "rules": rules, "settings": []}
    out = Path("bench/results") / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for updates, lr, beta2 in itertools.product([int(u) for u in args.updates.split(",")], lrs, beta2s):
        setting = {"updates": updates, "lr": lr, "beta2": beta2, "valid_loss": {}}
        tag = f"u{updates}_lr{lr:g}_b{beta2:g}"
        for method, rule in [("none", None)] + [("interleaved_eql", r) for r in rules]:
            conf = rule_config(base, method, rule, updates, lr, beta2, args.seed, args.curve_points)
            key = method if rule is None else f"{method}/{rule}"
            print(f"[optimizer_rules] {tag} {key} ...", file=sys.stderr, flush=True)
            r = train(conf, args, "dump", args.work_dir / args.name / f"{tag}_{key.replace('/', '_')}")
            setting["valid_loss"][key] = r["valid_loss"]
        ref = setting["valid_loss"]["none"]
        setting["vs_none"] = {k: round(v / ref - 1, 4) for k, v in setting["valid_loss"].items()}
        results["settings"].append(setting)
        # written after every setting, so a long sweep stopped part-way keeps what it measured
        atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    print("| updates | lr | beta2 | none | " + " | ".join(f"interleaved EQL, {r}" for r in rules) + " |")
    print("| --- " * (4 + len(rules)) + "|")
    for s in results["settings"]:
        cells = [f"{s['valid_loss'][f'interleaved_eql/{r}']:.4f} ({100 * s['vs_none'][f'interleaved_eql/{r}']:+.0f} %)"
                 for r in rules]
        print(f"| {s['updates']} | {s['lr']:g} | {s['beta2']:g} | {s['valid_loss']['none']:.4f} | "
              + " | ".join(cells) + " |")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
