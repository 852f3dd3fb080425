"""Stage 0 of the stage driver with --teacher_iterations 2: HuBERT's second iteration learns
k-means labels of the first teacher's middle state, and only the last teacher is probed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_data_dir

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"
SMOKE = Path(__file__).parents[2] / "egs2/demo/distill1/conf/teacher_hubert_smoke.yaml"


def stage0(tmp_path, *args):
    cmd = [str(DISTILL_SH), "--stage", "0", "--stop_stage", "0", "--python", sys.executable,
           "--nj", "1", "--datadir", "data", "--expdir", "exp", "--train_set", "train",
           "--valid_set", "dev", "--test_sets", "test", "--teacher_config", str(SMOKE),
           "--teacher_args", "--max_epoch 1 --num_iters_per_epoch 2", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ})


@pytest.mark.slow
def test_a_second_iteration_learns_the_first_teachers_labels(tmp_path):
    for split, n, seed in (("train", 8, 0), ("dev", 3, 1), ("test", 4, 2)):
        write_data_dir(tmp_path / "data", split, n, seed=seed)
    # stage 0 prepares the data first: here it is already there
    (tmp_path / "local").mkdir()
    (tmp_path / "local/data.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    (tmp_path / "local/data.sh").chmod(0o755)
    res = stage0(tmp_path, "--teacher_iterations", "2")
    assert res.returncode == 0, res.stderr[-4000:]
    exp = tmp_path / "exp"
    first, last = exp / "teacher_iter1", exp / "teacher"
    assert (first / "model.pth").exists() and (last / "model.pth").exists()
    assert "label_upstream" not in json.loads((first / "pretrain.json").read_text())  # MFCCs
    record = json.loads((last / "pretrain.json").read_text())
    assert record["label_upstream"] == "exp/teacher_iter1/model.pth"
    # only the teacher every later stage uses is labelled for and probed on the test set
    assert (last / "probe/probe.json").exists() and not (first / "probe").exists()
    assert (last / "labels/test").is_dir() and not (first / "labels/test").exists()
    assert "teacher iteration 2 of 2: exp/teacher" in res.stderr
    # a rerun skips both finished iterations
    res = stage0(tmp_path, "--teacher_iterations", "2")
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stderr.count("exists, skipped") == 2, res.stderr[-4000:]


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_the_iteration_count_must_be_a_positive_integer(tmp_path, bad):
    res = stage0(tmp_path, "--teacher_iterations", bad)
    assert res.returncode == 2
    assert f"--teacher_iterations must be a positive integer, got '{bad}'" in res.stderr
