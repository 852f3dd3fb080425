"""The GPU bench (bench/run_gpu.sh, bench/gpu_speed.py): its settings, corpus and bookkeeping,
and the whole command at toy size on the CPU (`--tiny`: corpus, dump, six trainings, the JSON
and the table)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_speed  # noqa: E402
import stacking_speed  # noqa: E402

from espnet2_stacking.tasks.distill_config import read_distill_config  # noqa: E402

METHODS = ["none", "interleaved_eql", "interleaved_prop1"]


def options(*argv):
    return gpu_speed.resolve(gpu_speed.get_parser().parse_args(list(argv)))


def test_full_size_runs_the_papers_config_with_each_methods_schedule():
    args = options()
    assert (args.teacher, args.batch_size, args.crop_max_samples, args.amp, args.ngpu) == (
        gpu_speed.HUBERT_BASE, 64, 250000, True, 1)
    base = read_distill_config(gpu_speed.PAPER_CONFIG)
    assert base["student_cnn"] == "teacher_frozen" and base["stacking_conf"]["targets"] == [4, 8, 12]
    lengths = {}
    for method in METHODS:
        conf = gpu_speed.bench_config(base, args, method)
        assert (conf["batch_size"], conf["crop_max_samples"], conf["use_amp"]) == (64, 250000, True)
        assert conf["teacher_dtype"] == "bfloat16" and conf["max_epoch"] * conf["num_iters_per_epoch"] == 300
        plan = stacking_speed.run_plan(conf, args.updates)
        lengths[method] = (list(plan.depths), list(plan.stage_lengths))
    assert lengths == {"none": ([12], [300]), "interleaved_eql": ([3, 6, 9, 12], [75] * 4),
                       "interleaved_prop1": ([3, 6, 9, 12], [30, 60, 90, 120])}
    # explicit options win over the profile's
    assert options("--batch_size", "32", "--amp", "false").batch_size == 32
    assert options("--tiny", "--updates", "20").updates == 20 and options("--tiny").ngpu == 0


def test_tiny_config_is_the_papers_at_toy_size():
    base = read_distill_config(gpu_speed.PAPER_CONFIG)
    tiny = gpu_speed.tiny_config(base)
    assert tiny["encoder_conf"]["output_size"] == tiny["preencoder_conf"]["output_size"] == 16
    assert tiny["frontend_conf"]["shapes"][0] == [32, 10, 5]  # the 4 x 32 teacher's CNN
    for key in ("student_cnn", "optimizer_state_rule", "loss_conf", "optim_conf", "scheduler"):
        assert tiny[key] == base[key]
    assert base["encoder_conf"]["output_size"] == 384  # the base is not changed
    args = options("--tiny")
    plans = {m: stacking_speed.run_plan(gpu_speed.bench_config(tiny, args, m), args.updates) for m in METHODS}
    assert [list(p.depths) for p in plans.values()] == [[4], [2, 4], [2, 4]]
    assert [stacking_speed.layer_ratio(p) for p in plans.values()] == [1.0, 0.75, pytest.approx(40 / 48)]


def test_synth_corpus_writes_kaldi_dirs_of_the_asked_lengths_once(tmp_path):
    from espnet2_stacking.data.kaldi_dir import read_data_dir

    gpu_speed.synth_corpus(tmp_path, {"train": 5, "dev": 2}, 0.5, 1.0, seed=0)
    utts = read_data_dir(tmp_path / "train")
    assert len(utts) == 5 and len(read_data_dir(tmp_path / "dev")) == 2
    for u in utts:
        audio, rate = soundfile.read(u.path)
        assert rate == 16000 and len(audio) == u.num_samples and 8000 <= u.num_samples <= 16000
        assert 0.1 < abs(audio).max() <= 0.5 + 1e-3
    stamp = (tmp_path / "train" / "wav.scp").stat().st_mtime_ns
    gpu_speed.synth_corpus(tmp_path, {"train": 5, "dev": 2}, 0.5, 1.0, seed=0)  # the same: kept
    assert (tmp_path / "train" / "wav.scp").stat().st_mtime_ns == stamp
    gpu_speed.synth_corpus(tmp_path, {"train": 3, "dev": 2}, 0.5, 1.0, seed=0)  # another: remade
    assert len(read_data_dir(tmp_path / "train")) == 3


def fake_run(depths, lengths, epoch_seconds, epoch_depths, train_seconds):
    return {"stage_depths": depths, "stage_updates": lengths, "ms_per_update": [10.0] * len(depths),
            "epoch_seconds": epoch_seconds, "epoch_depths": epoch_depths, "train_seconds": train_seconds,
            "layer_ratio": sum(n * d for n, d in zip(lengths, depths)) / (sum(lengths) * depths[-1]),
            "peak_gpu_gb": None, "audio_hours_per_hour": 5.0}


def test_compare_measures_against_none_and_the_ideal_and_prints_every_run():
    f = 0.8  # epochs of the stacked run cost (1 - f) + f d / 4 of none's
    none = fake_run([4], [8], [2.0, 2.0], [4, 4], 4.0)
    eql = fake_run([2, 4], [4, 4], [2.0 * 0.6, 2.0], [2, 4], 3.2)
    results = {"runs": {}, "layer_share": {}, "online_over_dump": {}}
    for mode, scale in (("dump", 1.0), ("online", 2.0)):
        results["runs"][f"{mode}/none"] = {**none, "train_seconds": 4.0 * scale}
        results["runs"][f"{mode}/interleaved_eql"] = {**eql, "train_seconds": 3.2 * scale}
    gpu_speed.compare(results, ["dump", "online"], ["none", "interleaved_eql"], 4)
    assert results["layer_share"] == {"dump": pytest.approx(f), "online": pytest.approx(f)}
    r = results["runs"]["dump/interleaved_eql"]
    assert r["speedup"] == 1.25 and r["ideal_speedup"] == round(1 / (0.2 + 0.8 * 0.75), 3)
    assert r["share_of_ideal"] == round(0.25 / (r["ideal_speedup"] - 1), 3)
    assert results["runs"]["dump/none"]["share_of_ideal"] is None
    assert results["online_over_dump"] == {"none": 2.0, "interleaved_eql": 2.0}
    results.update(dump=None, device="cpu", updates=8, batch_size=4, crop_max_samples=16000, amp=False,
                   bench_seconds=1.0, install_seconds=None)
    lines = gpu_speed.table(results).splitlines()
    assert lines[0].startswith("| mode/method | depths | ms per update at each depth |")
    assert "| dump/interleaved_eql | 2 > 4 | 10.0 / 10.0 |" in lines[3] and "| 2.00 |" in lines[3]
    # a noisy fit outside [0, 1] is reported, and the ideal uses the share clipped into it
    eql_noisy = {**eql, "epoch_seconds": [2.0 * 1.5, 2.0]}
    results = {"runs": {"dump/none": none, "dump/interleaved_eql": eql_noisy}, "layer_share": {},
               "online_over_dump": {}}
    gpu_speed.compare(results, ["dump"], ["none", "interleaved_eql"], 4)
    assert results["layer_share"]["dump"] < 0 and results["runs"]["dump/interleaved_eql"]["ideal_speedup"] == 1.0


@pytest.mark.slow
def test_run_gpu_tiny_writes_every_field_of_its_table(tmp_path):
    """The whole command at toy size on the CPU: six trainings of 12 updates (1-3 minutes on 2
    cores, mostly ESPnet's start-up in each training process)."""
    env = dict(os.environ, PYTHON=sys.executable)
    res = subprocess.run(["bash", str(ROOT / "bench" / "run_gpu.sh"), "--tiny", "--name", "tiny_test",
                          "--out_dir", str(tmp_path), "--work_dir", str(tmp_path / "work")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_tiny_test.json", "work"]  # renamed, no temp
    results = json.loads((tmp_path / "gpu_tiny_test.json").read_text())
    assert (results["device"], results["tiny"], results["amp"], results["updates"]) == ("cpu", True, False, 12)
    keys = [f"{mode}/{m}" for mode in ("dump", "online") for m in METHODS]
    assert list(results["runs"]) == keys
    args = options("--tiny")
    base = gpu_speed.tiny_config(read_distill_config(gpu_speed.PAPER_CONFIG))
    for key, r in results["runs"].items():
        plan = stacking_speed.run_plan(gpu_speed.bench_config(base, args, key.split("/")[1]), 12)
        assert r["stage_depths"] == list(plan.depths) and r["stage_updates"] == list(plan.stage_lengths)
        assert len(r["ms_per_update"]) == len(plan.depths) and all(ms > 0 for ms in r["ms_per_update"])
        assert r["updates"] == 12 and r["train_seconds"] > 0 and r["audio_hours_per_hour"] > 0
        assert r["speedup"] > 0 and r["ideal_speedup"] >= 1
        assert r["share_of_ideal"] is None or math.isfinite(r["share_of_ideal"])
        assert r["layer_ratio"] == pytest.approx(stacking_speed.layer_ratio(plan), abs=1e-4)
        assert r["peak_gpu_gb"] in (None, 0)  # no GPU
        assert math.isfinite(r["valid_loss"])
    assert results["runs"]["dump/none"]["speedup"] == 1.0
    assert set(results["layer_share"]) == {"dump", "online"}
    assert set(results["online_over_dump"]) == set(METHODS)
    assert all(v > 0 for v in results["online_over_dump"].values())
    dump = results["dump"]
    assert dump["utterances"] == 12 and dump["hours"] > 0 and dump["audio_hours_per_hour"] > 0
    assert dump["layers"] == [2, 4]
    # the table, one row per run, and the dump's line
    lines = res.stdout.splitlines()
    start = lines.index(next(x for x in lines if x.startswith("| mode/method |")))
    assert [x.split(" | ")[0] for x in lines[start + 2:start + 8]] == [f"| {k}" for k in keys]
    assert any(x.startswith("Dump: ") and "audio hours per hour" in x for x in lines)
    assert lines[-1] == f"-> {tmp_path / 'gpu_tiny_test.json'}"
