"""Stages 2-3 of the stage driver with a pq dump (--dump_args "--codec pq ..."): the codecs are
made once on the training set, the dump jobs of both sets encode with them, and stage 3 trains
from the codes (decoded in the model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TEACHER, write_config, write_data_dir

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"


@pytest.mark.slow
def test_stage_dump_with_pq_codes_then_distill_from_them(tmp_path):
    write_data_dir(tmp_path / "data", "train", 10)
    write_data_dir(tmp_path / "data", "dev", 3, seed=1)
    (tmp_path / "conf").mkdir()
    conf = write_config(tmp_path / "conf" / "distill_x.yaml", max_epoch=1, num_iters_per_epoch=3)
    cmd = [str(DISTILL_SH), "--stage", "2", "--stop_stage", "3", "--python", sys.executable,
           "--nj", "2", "--datadir", "data", "--dumpdir", "dump", "--expdir", "exp",
           "--train_set", "train", "--valid_set", "dev", "--teacher", TEACHER,
           "--distill_config", str(conf),
           "--dump_args", "--codec pq --num_codebooks 4 --codebook_frames 400 --shard_size 2kB"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # faiss's k-means threads spin on a busy CPU
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    train, dev = (json.loads((tmp_path / "dump" / s / "meta.json").read_text()) for s in ("train", "dev"))
    assert train["codec"] == dev["codec"] == "pq" and train["codec_digests"] == dev["codec_digests"]
    for split, n in (("train", 10), ("dev", 3)):
        lines = (tmp_path / "dump" / split / "layer_4.scp").read_text().splitlines()
        assert len(lines) == n
        path = lines[0].split()[1].rsplit(":", 2)[0]
        assert np.load(tmp_path / "dump" / split / path).dtype == np.uint8
    log = (tmp_path / "exp/distill_x/stacking.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["summary"]["updates"] == 3
