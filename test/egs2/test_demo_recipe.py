"""The recipe path itself (run.sh -> distill.sh -> Python stages) at smoke size."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[2] / "egs2" / "demo" / "distill1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                       reason="espeak-ng and sox are installed by tools/install.sh"),
]


def run(workdir, *args):
    return subprocess.run(["./run.sh", "--datadir", f"{workdir}/data", "--dumpdir", f"{workdir}/dump",
                           "--expdir", f"{workdir}/exp", *args],
                          cwd=RECIPE, capture_output=True, text=True, env={**os.environ})


@pytest.mark.timeout(1200)  # three tasks x two upstreams: over 600 s on a loaded 2-core machine
def test_the_whole_demo_at_smoke_size(tmp_path):
    """README's demo command with --smoke true: every stage 0-7, from nothing to RESULTS.md."""
    # run.sh's smoke corpus (6 voices, so that every train voice reaches the SID splits)
    corpus = ("--num_utts 16 --accents en-us --variants m1,m2,m3,f1,f2,f3 --dev_voices 1 "
              "--test_voices 1 --sid_held_out_every 3")
    res = run(tmp_path, "--smoke", "true", "--local_data_opts", f"{corpus} --audio_dir {tmp_path}/wavs",
              "--results", f"{tmp_path}/RESULTS.md")
    assert res.returncode == 0, res.stderr[-4000:]
    exp = tmp_path / "exp"
    times = (exp / "stage_times.tsv").read_text().splitlines()
    assert [t.split("\t")[0] for t in times] == [str(n) for n in range(8)]
    # stage 0: an ESPnet SSL teacher, probed against a random init
    assert (exp / "teacher/model.pth").exists() and (exp / "teacher/config.yaml").exists()
    probe = json.loads((exp / "teacher/probe/probe.json").read_text())
    assert "trained_beats_random" in probe and (exp / "teacher/probe/probe.png").exists()
    # stages 2-4: distilled from that teacher, 2 -> 4 -> 6
    log = [json.loads(x) for x in (exp / "distill_interleaved_eql/stacking.jsonl").read_text().splitlines()]
    assert [r["to"] for r in log[:-1]] == [4, 6] and log[-1]["summary"]["final_depth"] == 6
    assert json.loads((tmp_path / "dump/train/meta.json").read_text())["teacher"] == str(exp / "teacher/model.pth")
    assert json.loads((exp / "student_interleaved_eql_random/stacking.json").read_text())["init"] == "random"
    # stages 5-7: pr and sid on the student and FBANK (run.sh --smoke true; asr: test_asr_stages)
    results = (tmp_path / "RESULTS.md").read_text()
    assert ("|upstream|kind|parameters|stacking method|schedule|distillation time (s)|"
            "PR test PER (%)|SID sid_test accuracy (%)|") in results, results[:3000]
    assert re.search(r"^\|student\|student\|[\d,]+\|interleaved\|eql\|[\d.]+(\|[\d.]+){2}\|$", results, re.M), results[:3000]
    # FBANK: no weights, no stacking history, a number for each task
    assert re.search(r"^\|fbank\|FBANK baseline\|0\|-\|-\|-(\|[\d.]+){2}\|$", results, re.M), results[:3000]
    for title, metric in (("## PR", "test PER (%)"), ("## SID", "sid_test accuracy (%)")):
        assert title in results and metric in results
    assert "## ASR" not in results and not (exp / "asr_student").exists()
    # every task's table has each upstream with its training and decoding time
    for task in ("pr", "sid"):
        for name in ("student", "fbank"):
            run_dir = exp / f"{task}_{name}"
            assert "The training was finished" in (run_dir / "train.log").read_text()
            assert float((run_dir / "train_seconds").read_text()) > 0
            assert f"## {task}_{name}" in results
    section = results[results.index("## PR"):results.index("## SID")]
    row = re.search(r"^\|fbank\|FBANK baseline\|0\|-\|-\|([\d.]+)\|([\d.]+)\|([\d.]+)\|$", section, re.M)
    assert row, section
    assert float(row.group(2)) == float((exp / "pr_fbank/train_seconds").read_text())
    assert float(row.group(3)) == float((exp / "pr_fbank/decode_test/decode_seconds").read_text())
    per = json.loads((exp / "pr_fbank/decode_test/scores.json").read_text())["per"]
    assert float(row.group(1)) == pytest.approx(100 * per["error_rate"], abs=0.06)
    phones = (tmp_path / "data/token_list/phn/tokens.txt").read_text().split()
    assert phones[:2] == ["<blank>", "<unk>"] and "<space>" not in phones  # phones, not characters
    assert (exp / "sid_student/decode_sid_test/prediction/text").exists()
    # run.sh's --downstream_feats dump: the student's states once per data dir, read by every
    # head and decoding; FBANK stays online
    states = tmp_path / "dump/upstream_states"
    assert sorted(p.name for p in (states / "student").iterdir() if p.is_dir()) == [
        "dev", "sid_dev", "sid_test", "sid_train", "test", "train"]
    assert not (states / "fbank").exists()
    # the SID splits are drawn from train: linked from its dump, not computed again
    for dset in ("sid_train", "sid_dev", "sid_test"):
        meta = json.loads((states / "student" / dset / "meta.json").read_text())
        assert meta["reused"] == meta["utterances"] == len((tmp_path / "data" / dset / "wav.scp").read_text().splitlines())
    for task in ("pr", "sid"):
        config = (exp / f"{task}_student/config.yaml").read_text()
        assert "input: states" in config and "input: states" not in (exp / f"{task}_fbank/config.yaml").read_text()
        assert "upstream_states/student/" in config
    assert "check_speakers: 3 splits, 4 speakers in" in res.stderr
    # one collect-stats pass per task, shared by the upstreams (no global_mvn)
    assert (exp / "pr_stats_phn/train/text_shape").exists()
    assert (exp / "sid_stats_spk/train/speech_shape").exists() and not (exp / "sid_fbank/stats").exists()
    # shapes only: the shared pass runs the cheapest frontend, not an upstream
    assert "upstream=fbank" in (exp / "sid_stats_spk.log").read_text().splitlines()[1]
    # 4 decodings fill run.sh's --nj 2: one job per test set, none split
    assert not list(exp.glob("*/decode_*/logdir/keys.2.scp"))
    for task in ("pr", "sid"):  # two jobs each, side by side (run.sh: --asr_nj 2)
        assert res.stderr.count(f"finished {task} training on") == 2, task


def test_unknown_option_is_refused():
    res = subprocess.run(["./distill.sh", "--no_such_option", "1"], cwd=RECIPE, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown option '--no_such_option'" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--full", "maybe"], "--full must be true or false, got 'maybe'"),
    (["--smoke", "true", "--full", "true"], "--smoke true and --full true exclude each other"),
])
def test_size_modes_are_checked_before_any_stage(tmp_path, args, message):
    res = run(tmp_path, *args)
    assert res.returncode == 2 and message in res.stderr
    assert not (tmp_path / "exp").exists() and not (tmp_path / "data").exists()
