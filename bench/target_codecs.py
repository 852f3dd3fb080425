#!/usr/bin/env python3
"""What each target codec costs and loses: one invocation, same data, teacher, seed, updates.

For each codec (fp16, int8, pq): dump the training set's targets with it (dump_teacher_feats
--codec), then distil interleaved EQL and `none` from that dump, every run validated against the
same fp16 dump of the dev set, so the codecs are compared on one yardstick. Per codec: stored
bytes per frame per stream, the dump's seconds (teacher pass, codec training, encoding,
writing, checking: the dump's own clock, not the interpreter start), each method's train seconds
(the trainer's clock) and final validation loss against fp16 targets, and the loss relative to
the fp16-target student of the same method; also ESPnet's per-step data-loading time against
the whole step (the loader reads crops of shards; pq codes are expanded in the model).

The bench's default setting: bench/run_cpu.sh prepares the corpus, the 6 x 128 teacher and its
fp16 dump (bench/work/teacher_6x128), then:
    tools/venv/bin/python bench/target_codecs.py --teacher bench/work/teacher_6x128/exp/teacher/model.pth \
        --data_dir egs2/demo/distill1/data --base_config bench/conf/distill_6x64_from_6x128.yaml
A smaller setting (the demo's own 6 x 64 teacher, after the demo recipe's stages 0-2) is in
README "Target codecs". Writes bench/results/<name>.json and prints the table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from stacking_speed import STEP_PARTS, curve_and_profile, run_config  # bench/ is the script's dir

from espnet2_stacking.data.atomic import atomic_write_text

CODECS = ("fp16", "int8", "pq")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="Teacher spec (the dumps' teacher)")
    p.add_argument("--data_dir", type=Path, required=True, help="Holds train/ and dev/")
    p.add_argument("--base_config", type=Path, required=True, help="The distillation YAML")
    p.add_argument("--codecs", default=",".join(CODECS),
                   help="fp16, int8, pq (--num_codebooks bytes) or pq:M (M bytes), comma-separated")
    p.add_argument("--methods", default="interleaved_eql,none")
    p.add_argument("--num_codebooks", type=int, default=8, help="pq bytes per frame and stream")
    p.add_argument("--codebook_frames", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--curve_points", type=int, default=6)
    p.add_argument("--nj", type=int, default=1, help="dump jobs")
    p.add_argument("--num_workers", type=int, default=None,
                   help="Loader workers (default: the base config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="target_codecs")
    p.add_argument("--work_dir", type=Path, default=Path("bench/work"))
    return p


def codec_spec(spec: str, default_codebooks: int):
    """'pq:4' -> ('pq', 4); 'int8' -> ('int8', default): one table row per spec."""
    codec, _, m = spec.partition(":")
    if codec not in CODECS or (m and (codec != "pq" or not m.isdigit())):
        raise SystemExit(f"--codecs: '{spec}' is not one of fp16, int8, pq, pq:M")
    return codec, int(m) if m else default_codebooks


def dump(args, split: str, spec: str, out: Path) -> dict:
    """dump_teacher_feats of one split with one codec (reused when done); its summary."""
    codec, num_codebooks = codec_spec(spec, args.num_codebooks)
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.dump_teacher_feats",
           "--data_dir", str(args.data_dir / split), "--out_dir", str(out), "--teacher", args.teacher,
           "--distill_config", str(args.base_config), "--codec", codec, "--nj", str(args.nj),
           "--num_codebooks", str(num_codebooks), "--codebook_frames", str(args.codebook_frames)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{out}: dump failed:\n{res.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def train(conf: dict, args, train_dump: Path, valid_dump: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.in.yaml").write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", "--config", str(out / "config.in.yaml"),
           "--output_dir", str(out / "exp"), "--ngpu", "0", "--use_matplotlib", "false"]
    for tag, split, dump_dir in (("train", "train", train_dump), ("valid", "dev", valid_dump)):
        cmd += [f"--{tag}_data_path_and_name_and_type", f"{args.data_dir / split}/wav.scp,speech,sound",
                f"--{tag}_shape_file", f"{args.data_dir / split}/utt2num_samples",
                f"--{tag}_dump_dir", str(dump_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{out}: training failed:\n{res.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "exp" / "stacking.jsonl").read_text().splitlines()]
    curve, last_loss, profile = curve_and_profile(out / "exp")
    return {"train_seconds": log[-1]["summary"]["total_seconds"], "valid_loss": last_loss,
            "curve": curve, "step_profile": profile,
            # ESPnet's iter_time is the wait for the next batch; the other parts are the step
            "data_share": round(profile["iter_time"] / sum(profile[k] for k in STEP_PARTS), 4)}


def main():
    args = get_parser().parse_args()
    from espnet2_stacking.tasks.distill_config import read_distill_config

    base = read_distill_config(args.base_config)
    codecs, methods = args.codecs.split(","), args.methods.split(",")
    for spec in codecs:
        codec_spec(spec, args.num_codebooks)  # refuse a bad spec before the first dump
    if "fp16" not in codecs:
        raise SystemExit("--codecs must include fp16: every loss is compared with it")
    work = args.work_dir / args.name
    start = time.perf_counter()
    # the yardstick: one fp16 dump of the dev set validates every run
    valid_dump = work / "dump_fp16" / "dev"
    dump(args, "dev", "fp16", valid_dump)
    results = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "teacher": args.teacher,
               "base_config": str(args.base_config), "updates": args.updates,
               "num_codebooks": args.num_codebooks, "codebook_frames": args.codebook_frames,
               "methods": methods, "codecs": []}
    for codec in ["fp16"] + [c for c in codecs if c != "fp16"]:
        print(f"[bench] {codec}: dump ...", file=sys.stderr, flush=True)
        tag = codec.replace(":", "")  # pq:4 -> pq4 in paths
        out = work / f"dump_{tag}" / "train"
        if (out / "summary.json").exists():  # a rerun's train dump is timed afresh
            import shutil

            shutil.rmtree(out)
        summary = dump(args, "train", codec, out)
        meta = json.loads((out / "meta.json").read_text())
        streams = [f"layer_{t}" for t in meta["layers"]]
        from espnet2_stacking.data.target_codecs import bytes_per_frame

        kind, num_codebooks = codec_spec(codec, args.num_codebooks)
        entry = {"codec": codec,
                 "bytes_per_frame": {s: bytes_per_frame(kind, meta["hidden_size"], num_codebooks)
                                     for s in streams},
                 "dump_seconds": summary["seconds"], "dump_bytes": round(summary["gb_total"] * 1e9),
                 "train_seconds": {}, "valid_loss_fp16_targets": {}, "loss_vs_fp16": {},
                 "data_share": {}, "runs": {}}
        for method in methods:
            print(f"[bench] {codec}: {method} ...", file=sys.stderr, flush=True)
            conf = run_config(base, method, args.updates, args.seed, args.curve_points)
            if args.num_workers is not None:
                conf["num_workers"] = args.num_workers
            r = train(conf, args, out, valid_dump, work / f"{tag}_{method}")
            entry["runs"][method] = r
            entry["train_seconds"][method] = r["train_seconds"]
            entry["valid_loss_fp16_targets"][method] = r["valid_loss"]
            entry["data_share"][method] = r["data_share"]
        results["codecs"].append(entry)
    ref = results["codecs"][0]["valid_loss_fp16_targets"]
    for entry in results["codecs"]:
        entry["loss_vs_fp16"] = {m: round(v / ref[m], 4) for m, v in entry["valid_loss_fp16_targets"].items()}
        entry["bytes_vs_fp16"] = round(sum(entry["bytes_per_frame"].values())
                                       / sum(results["codecs"][0]["bytes_per_frame"].values()), 5)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    path = Path("bench/results") / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")
    print(f"{'codec':<6}{'B/frame/layer':>14}{'x fp16':>8}{'dump s':>8}  " + "".join(
        f"{m + ' s':>20}{'valid':>9}{'vs fp16':>9}{'data':>7}" for m in methods))
    for e in results["codecs"]:
        per_layer = next(iter(e["bytes_per_frame"].values()))
        print(f"{e['codec']:<6}{per_layer:>14}{e['bytes_vs_fp16']:>8.4f}{e['dump_seconds']:>8.1f}  " + "".join(
            f"{e['train_seconds'][m]:>20.1f}{e['valid_loss_fp16_targets'][m]:>9.4f}"
            f"{e['loss_vs_fp16'][m]:>9.4f}{e['data_share'][m]:>7.3f}" for m in methods))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
