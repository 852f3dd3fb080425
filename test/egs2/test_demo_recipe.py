"""The recipe path itself (run.sh -> distill.sh -> Python stages) at smoke size."""

import json
import os
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


def test_stages_1_to_7_at_smoke_size(tmp_path):
    res = run(tmp_path, "--stop_stage", "4",
              "--local_data_opts", f"--num_utts 12 --audio_dir {tmp_path}/wavs",
              "--distill_args", "--max_epoch 2 --num_iters_per_epoch 3 --batch_size 4")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "data/train" in res.stdout + res.stderr  # the corpus summary table
    log = [json.loads(x) for x in (tmp_path / "exp/distill_interleaved_eql/stacking.jsonl").read_text().splitlines()]
    assert [r["to"] for r in log[:-1]] == [4, 6] and log[-1]["summary"]["final_depth"] == 6
    assert (tmp_path / "exp/student_interleaved_eql/model.pth").exists()
    times = (tmp_path / "exp/stage_times.tsv").read_text().splitlines()
    assert [t.split("\t")[0] for t in times] == ["1", "2", "3", "4"]

    # downstream ASR on the student only (the teacher's run is the same path), a few updates
    later = run(tmp_path, "--stage", "5", "--asr_upstreams", "student", "--results", f"{tmp_path}/RESULTS.md",
                "--asr_args", "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4")
    assert later.returncode == 0, later.stderr[-4000:]
    results = (tmp_path / "RESULTS.md").read_text()
    assert "|student|student|" in results and "|interleaved|eql|" in results
    assert (tmp_path / "exp/asr_student/decode_test/1best_recog/text").exists()


def test_unknown_option_is_refused():
    res = subprocess.run(["./distill.sh", "--no_such_option", "1"], cwd=RECIPE, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown option '--no_such_option'" in res.stderr
