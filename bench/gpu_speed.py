#!/usr/bin/env python3
"""The paper's setting at full size on one GPU, from nothing: bench/run_gpu.sh's measurement.

    bench/run_gpu.sh --name h200        (installs what is missing, then runs this)
    bench/run_gpu.sh --tiny             (the same steps at toy size, on the CPU)

Steps, all in one invocation:
1. a synthetic corpus, made here (no download, no espeak-ng): --utts training and --dev_utts
   validation utterances of --min_seconds to --max_seconds at 16 kHz (harmonic tones with
   vibrato, chirps and shaped noise under a syllable-like envelope, written as 16-bit wav);
2. the teacher's dump (espnet2_stacking.pipelines.teacher_dump.dump_teacher_states with the
   CNN's output, on the GPU in --teacher_dtype), timed: audio hours dumped per hour;
3. `none` (full depth from the start), interleaved EQL and interleaved PROP-1, each with the
   dumped targets and with the teacher online, --updates each, from the LibriSpeech recipe's
   distill_interleaved_eql_frozen_cnn.yaml (the paper's student, 12 x 384 grown 3 -> 6 -> 9 ->
   12, MSE + 0.5 L2L on teacher states 4, 8, 12, the teacher's CNN frozen and its output dumped
   or taken from the online teacher's pass) with its stacking_conf set per run as
   stacking_speed.py's METHODS do, bf16 autocast (use_amp), --batch_size crops of
   --crop_max_samples.
The teacher is HuBERT Base's shape with random weights (speed does not depend on the weights).

For each run: ms per update at each depth of its plan (stacking.jsonl's stage_seconds over the
plan's stage lengths: the trainer's clock, data loading included; the first stage also holds
CUDA's start-up), train seconds, the speed-up against `none` in the same teacher mode, the ideal
speed-up of its schedule 1 / ((1 - f) + f r) (r: the plan's layer ratio; f: the measured share
of a full-depth update spent in the growing layers, fitted epoch by epoch against `none`'s same
epochs, as stacking_speed.py does), the share of that ideal reached, online over dumped time per
update (same method), the peak GPU memory of its training process (ESPnet's
gpu_max_cached_mem_GB: torch.cuda.max_memory_reserved, the most over its epochs; null on the
CPU) and hours of audio trained on per device-hour. Writes <out_dir>/gpu_<name>.json (through a
temporary file and a rename) and prints a Markdown table.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from espnet2.utils.types import str2bool
from stacking_speed import (  # bench/ is the script's directory
    audio_hours_per_update,
    check_dumps,
    epoch_depths,
    layer_ratio,
    layer_share,
    reporter_stats,
    run_config,
    run_plan,
    train,
)

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG = ROOT / "egs2/librispeech/distill1/conf/distill_interleaved_eql_frozen_cnn.yaml"
HUBERT_BASE = ("random:hubert?layers=12&dim=768&heads=12&ffn=3072&conv=512&pos_kernel=128"
               "&pos_groups=16&seed=0")
TINY_TEACHER = "random:hubert?layers=4&dim=32&seed=0"  # the tests' teacher: 4 x 32, CNN 7 x 32
METHODS = "none,interleaved_eql,interleaved_prop1"

# each option's default at full size and with --tiny (explicit options win)
PROFILES = {
    "full": dict(teacher=HUBERT_BASE, updates=300, curve_points=4, batch_size=64,
                 crop_max_samples=250000, num_workers=8, utts=320, dev_utts=16, min_seconds=2.0,
                 max_seconds=16.0, amp=True, teacher_dtype="bfloat16", ngpu=1, name="gpu"),
    "tiny": dict(teacher=TINY_TEACHER, updates=12, curve_points=2, batch_size=4,
                 crop_max_samples=16000, num_workers=0, utts=12, dev_utts=4, min_seconds=0.5,
                 max_seconds=1.5, amp=False, teacher_dtype="float32", ngpu=0, name="tiny"),
}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true",
                   help="Toy size on the CPU: a 4 x 32 teacher, a 4 x 16 student grown 2 -> 4, "
                        "12 utterances, 12 updates per run, fp32 (a test of the whole path)")
    p.add_argument("--name", default=None, help="<out_dir>/gpu_<name>.json (default gpu; tiny)")
    p.add_argument("--out_dir", type=Path, default=ROOT / "bench/results")
    p.add_argument("--work_dir", type=Path, default=ROOT / "bench/work",
                   help="Corpus, dump and runs go to <work_dir>/gpu_<name>/")
    p.add_argument("--base_config", type=Path, default=PAPER_CONFIG)
    p.add_argument("--teacher", default=None, help=f"Teacher spec (default {HUBERT_BASE})")
    p.add_argument("--teacher_dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="The teacher's dtype, dump and online (default bfloat16; tiny float32)")
    p.add_argument("--methods", default=METHODS, help="Runs (stacking_speed.py's METHODS); none first")
    p.add_argument("--teacher_modes", default="dump,online")
    p.add_argument("--updates", type=int, default=None, help="Updates per run (300; tiny 12)")
    p.add_argument("--curve_points", type=int, default=None,
                   help="Epochs per run, each ending in a validation pass; the layer share is "
                        "fitted on them (4; tiny 2)")
    p.add_argument("--batch_size", type=int, default=None, help="Crops per batch (64; tiny 4)")
    p.add_argument("--crop_max_samples", type=int, default=None, help="(250000 = 15.6 s; tiny 16000)")
    p.add_argument("--num_workers", type=int, default=None, help="Loader workers (8; tiny 0)")
    p.add_argument("--amp", type=str2bool, default=None,
                   help="ESPnet's use_amp: bf16 autocast on a GPU that has it (true; tiny false)")
    p.add_argument("--utts", type=int, default=None, help="Training utterances (320; tiny 12)")
    p.add_argument("--dev_utts", type=int, default=None, help="Validation utterances (16; tiny 4)")
    p.add_argument("--min_seconds", type=float, default=None, help="Shortest utterance (2; tiny 0.5)")
    p.add_argument("--max_seconds", type=float, default=None, help="Longest utterance (16; tiny 1.5)")
    p.add_argument("--ngpu", type=int, default=None, help="0 or 1 (1; tiny 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--install_seconds", type=float, default=None,
                   help="run_gpu.sh's install time, recorded in the JSON")
    return p


def resolve(args) -> argparse.Namespace:
    """Options left unset take the profile's default (full size, or --tiny)."""
    for key, value in PROFILES["tiny" if args.tiny else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.ngpu not in (0, 1):
        raise SystemExit("--ngpu must be 0 or 1 (one GPU)")
    if args.min_seconds <= 0 or args.max_seconds < args.min_seconds:
        raise SystemExit("--min_seconds must be positive and at most --max_seconds")
    return args


def tiny_config(base: dict) -> dict:
    """The paper's config at toy size: the same settings, a 4 x 16 student grown 2 -> 4 with
    l2l pairs on the 4 x 32 teacher's states 2 and 4, the CNN 7 x 32 (the teacher's)."""
    conf = dict(base)
    conf.update(
        teacher_num_layers=4, teacher_hidden_size=32,
        stacking_conf={**base["stacking_conf"], "depths": [2, 4], "targets": [2, 4]},
        frontend_conf={**base["frontend_conf"], "shapes": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2},
        preencoder_conf={**(base.get("preencoder_conf") or {}), "output_size": 16},
        encoder_conf={**base["encoder_conf"], "output_size": 16, "attention_heads": 2, "linear_units": 32},
    )
    return conf


# ---- the corpus ---------------------------------------------------------------------------
def synth_utterance(rng: np.random.Generator, n: int) -> np.ndarray:
    """n samples of speech-like sound: a voiced tone (harmonics, vibrato), a chirp or shaped
    noise, under a syllable-rate envelope, with a little background noise."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(90.0, 250.0)
    kind = rng.integers(3)
    if kind == 0:  # harmonics with a 4-7 Hz vibrato of +-4 %
        rate = rng.uniform(4.0, 7.0)
        phase = 2 * np.pi * f0 * (t - 0.04 / (2 * np.pi * rate) * np.cos(2 * np.pi * rate * t))
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 6))
    elif kind == 1:  # a chirp from f0 to up to 4 kHz
        f1 = rng.uniform(500.0, 4000.0)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1] + 1e-9)))
    else:  # white noise through a moving average (darker or brighter)
        width = int(rng.integers(1, 16))
        x = np.convolve(rng.standard_normal(n), np.ones(width) / width, mode="same")
    syllables = rng.uniform(2.5, 6.0)
    envelope = 0.2 + 0.8 * np.sin(np.pi * syllables * t + rng.uniform(0, np.pi)) ** 2
    x = x * envelope + 0.01 * rng.standard_normal(n)
    return (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def synth_corpus(data_dir: Path, splits: dict, min_seconds: float, max_seconds: float, seed: int) -> None:
    """data_dir/<split>/ Kaldi dirs of synthetic utterances ({split: count}); kept when a
    previous call made the same corpus (synth.json)."""
    import soundfile

    from espnet2_stacking.data.kaldi_dir import write_kaldi_dir
    from espnet2_stacking.data.utterances import Utterance

    params = {"splits": splits, "min_seconds": min_seconds, "max_seconds": max_seconds, "seed": seed,
              "sample_rate": SAMPLE_RATE}
    stamp = data_dir / "synth.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    for s, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, s])
        wavs = data_dir / split / "wavs"
        wavs.mkdir(parents=True)
        utts = []
        for i in range(count):
            spk = f"spk{i % 8}"
            uid = f"{spk}-{split}{i:04d}"
            n = int(rng.uniform(min_seconds, max_seconds) * SAMPLE_RATE)
            path = wavs / f"{uid}.wav"
            soundfile.write(path, synth_utterance(rng, n), SAMPLE_RATE, subtype="PCM_16")
            utts.append(Utterance(uid, str(path.resolve()), n, spk, "SYNTHETIC"))
        write_kaldi_dir(data_dir / split, utts)
    atomic_write_text(stamp, json.dumps(params) + "\n")


def dump(args, layers: list, data_dir: Path, dump_dir: Path) -> dict:
    """The teacher's states and CNN output for dev, then train (timed: dev pays the device's
    start-up); a fresh dump every time, so its time is measured."""
    import torch

    from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

    shutil.rmtree(dump_dir, ignore_errors=True)
    out = {}
    for split in ("dev", "train"):
        start = time.perf_counter()
        summary = dump_teacher_states(data_dir / split, dump_dir / split, args.teacher, layers,
                                      dtype=args.teacher_dtype, ngpu=args.ngpu, cnn_features=True)
        out[split] = dict(summary, wall_seconds=round(time.perf_counter() - start, 2))
    if args.ngpu > 0:
        torch.cuda.empty_cache()
    train_dump = out["train"]
    return {"utterances": train_dump["utterances"], "hours": train_dump["hours"],
            "seconds": train_dump["seconds"], "wall_seconds": train_dump["wall_seconds"],
            "gb": train_dump["gb_total"], "layers": train_dump["layers"],
            "audio_hours_per_hour": round(train_dump["hours"] / max(train_dump["seconds"], 1e-9) * 3600, 1),
            "dev_seconds": out["dev"]["seconds"]}


# ---- the runs ------------------------------------------------------------------------------
def peak_gpu_gb(exp: Path):
    """The most GPU memory the training process held (ESPnet's gpu_max_cached_mem_GB: its
    torch.cuda.max_memory_reserved at each epoch's end); None when it never used CUDA."""
    values = [float(s[key]["gpu_max_cached_mem_GB"]) for s in reporter_stats(exp).values()
              for key in ("train", "valid") if "gpu_max_cached_mem_GB" in s.get(key, {})]
    return round(max(values), 3) if values else None


def bench_config(base: dict, args, method: str) -> dict:
    conf = run_config(base, method, args.updates, args.seed, args.curve_points)
    conf.update(batch_size=args.batch_size, crop_max_samples=args.crop_max_samples,
                num_workers=args.num_workers, use_amp=args.amp, teacher_dtype=args.teacher_dtype)
    return conf


def run_one(base: dict, args, mode: str, method: str, paths: argparse.Namespace) -> dict:
    conf = bench_config(base, args, method)
    out = paths.runs / f"{mode}_{method}"
    shutil.rmtree(out, ignore_errors=True)
    r = train(conf, paths, mode, out)
    plan = run_plan(conf, args.updates)
    if r["stage_depths"] != list(plan.depths) or r["updates"] != args.updates:
        raise RuntimeError(f"{out}: trained depths {r['stage_depths']} over {r['updates']} updates, "
                           f"but the plan has {list(plan.depths)} over {args.updates}")
    r["stage_updates"] = list(plan.stage_lengths)
    r["ms_per_update"] = [round(1000 * s / n, 2) for s, n in zip(r["stage_seconds"], plan.stage_lengths)]
    r["epoch_depths"] = epoch_depths(plan, args.curve_points)
    r["layer_ratio"] = round(layer_ratio(plan), 4)
    r["peak_gpu_gb"] = peak_gpu_gb(out / "exp")
    r["audio_hours_per_hour"] = round(
        audio_hours_per_update(conf, paths.data_dir / "train") * r["updates"] / r["train_seconds"] * 3600, 2)
    return r


def compare(results: dict, modes: list, methods: list, full_depth: int) -> None:
    """Speed-ups against `none` (same mode) and against each schedule's ideal, online / dump."""
    runs = results["runs"]
    for mode in modes:
        ref = runs[f"{mode}/none"]
        stacked = [runs[f"{mode}/{m}"] for m in methods if m != "none"]
        f = layer_share(stacked, ref["epoch_seconds"], full_depth)
        results["layer_share"][mode] = None if math.isnan(f) else round(f, 4)
        # a share is in [0, 1]; a noisy fit outside it would give a meaningless ideal
        f = 0.0 if math.isnan(f) else min(max(f, 0.0), 1.0)
        for m in methods:
            r = runs[f"{mode}/{m}"]
            r["speedup"] = round(ref["train_seconds"] / r["train_seconds"], 3)
            r["ideal_speedup"] = round(1 / ((1 - f) + f * r["layer_ratio"]), 3)
            r["share_of_ideal"] = (round((r["speedup"] - 1) / (r["ideal_speedup"] - 1), 3)
                                   if r["ideal_speedup"] > 1.001 else None)
    if {"dump", "online"} <= set(modes):
        for m in methods:
            results["online_over_dump"][m] = round(
                runs[f"online/{m}"]["train_seconds"] / runs[f"dump/{m}"]["train_seconds"], 3)


def table(results: dict) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = ["| mode/method | depths | ms per update at each depth | train s | speed-up | ideal | of ideal "
            "| online / dump | peak GPU GB | audio h / h |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, r in results["runs"].items():
        mode, method = key.split("/")
        ratio = results["online_over_dump"].get(method) if mode == "dump" else None
        rows.append(
            f"| {key} | {' > '.join(map(str, r['stage_depths']))} | "
            f"{' / '.join(format(v, '.1f') for v in r['ms_per_update'])} | {r['train_seconds']:.1f} | "
            f"{r['speedup']:.3f} | {r['ideal_speedup']:.3f} | {num(r['share_of_ideal'], '.2f')} | "
            f"{num(ratio, '.2f')} | {num(r['peak_gpu_gb'], '.1f')} | {r['audio_hours_per_hour']:.1f} |")
    d = results["dump"]
    shares = ", ".join(f"{m} {num(f, '.3f')}" for m, f in results["layer_share"].items())
    install = results["install_seconds"]
    rows += ["", ("" if d is None else
                  f"Dump: {d['hours']:.3f} h of audio ({d['utterances']} utterances, {d['gb']:.2f} GB) in "
                  f"{d['seconds']:.1f} s: {d['audio_hours_per_hour']:.0f} audio hours per hour. ")
             + f"Layer share f: {shares}. {results['device']}, {results['updates']} updates per run, "
             f"batch {results['batch_size']} x {results['crop_max_samples']} samples"
             f"{', bf16 autocast' if results['amp'] else ', fp32'}; the bench took "
             f"{results['bench_seconds']:.0f} s" + ("" if install is None else f" after {install:.0f} s of install")
             + "."]
    return "\n".join(rows)


def main(argv=None):
    args = resolve(get_parser().parse_args(argv))
    start = time.perf_counter()
    import espnet
    import torch

    from espnet2_stacking.tasks.distill_config import read_distill_config

    if args.ngpu > 0 and not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py: no CUDA GPU here (bench/run_gpu.sh --tiny runs the toy size on the CPU)")
    methods, modes = args.methods.split(","), args.teacher_modes.split(",")
    if methods[0] != "none":
        raise SystemExit("--methods must start with none: every speed-up is measured against it")
    if not set(modes) <= {"dump", "online"}:
        raise SystemExit(f"--teacher_modes takes dump and/or online, got {args.teacher_modes}")
    base = read_distill_config(args.base_config)
    if args.tiny:
        base = tiny_config(base)
    frozen = base.get("student_cnn") == "teacher_frozen"
    work = args.work_dir / f"gpu_{args.name}"
    paths = argparse.Namespace(data_dir=work / "data", dump_dir=work / "dump", runs=work / "runs",
                               teacher=args.teacher, ngpu=args.ngpu, frozen_teacher_cnn=frozen)

    def log(msg):
        print(f"[gpu_speed {time.perf_counter() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    log(f"synthesising {args.utts} + {args.dev_utts} utterances of {args.min_seconds}-{args.max_seconds} s")
    synth_corpus(paths.data_dir, {"train": args.utts, "dev": args.dev_utts}, args.min_seconds,
                 args.max_seconds, args.seed)
    results = {"name": args.name, "tiny": args.tiny, "machine": os.uname().nodename, "cpus": os.cpu_count(),
               "device": torch.cuda.get_device_name(0) if args.ngpu > 0 else "cpu",
               "torch": torch.__version__, "espnet": espnet.__version__,
               "base_config": str(args.base_config), "teacher": args.teacher,
               "teacher_dtype": args.teacher_dtype, "amp": args.amp, "batch_size": args.batch_size,
               "crop_max_samples": args.crop_max_samples, "num_workers": args.num_workers,
               "updates": args.updates, "curve_points": args.curve_points, "methods": methods,
               "teacher_modes": modes, "install_seconds": args.install_seconds}
    results["dump"] = None
    if "dump" in modes:
        log(f"dumping {args.teacher} (states {base['stacking_conf']['targets']} and its CNN output)")
        results["dump"] = dump(args, base["stacking_conf"]["targets"], paths.data_dir, paths.dump_dir)
        check_dumps([paths.dump_dir / "train", paths.dump_dir / "dev"], args.teacher, frozen)
        log(f"dump: {results['dump']['audio_hours_per_hour']} audio hours per hour")
    results.update(runs={}, layer_share={}, online_over_dump={})
    for mode in modes:
        for method in methods:
            log(f"training {mode}/{method} ({args.updates} updates)")
            r = run_one(base, args, mode, method, paths)
            results["runs"][f"{mode}/{method}"] = r
            log(f"{mode}/{method}: {r['train_seconds']:.1f} s, ms per update {r['ms_per_update']}, "
                f"peak GPU {r['peak_gpu_gb']} GB")
    compare(results, modes, methods, base["stacking_conf"]["depths"][-1])
    results["bench_seconds"] = round(time.perf_counter() - start, 1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"gpu_{args.name}.json"
    atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
