"""Stages 2-3 of the stage driver with ``teacher_cnn_features: true``: stage 2 dumps the
teacher's CNN output beside its states, stage 3 reads it in place of the student's frozen CNN;
with the teacher online, stage 3 takes it from the teacher's pass."""

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from conftest import write_config, write_data_dir

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"
TEACHER = "random:hubert?layers=4&dim=32&conv=16&seed=3"  # its CNN fits the tiny student's


def test_dump_and_distill_with_the_teacher_cnn_output(tmp_path):
    write_data_dir(tmp_path / "data", "train", 8)
    write_data_dir(tmp_path / "data", "dev", 3, seed=1)
    (tmp_path / "conf").mkdir()
    conf = write_config(tmp_path / "conf" / "distill_x.yaml", teacher_cnn_features=True,
                        max_epoch=1, num_iters_per_epoch=3)
    cmd = [str(DISTILL_SH), "--stage", "2", "--stop_stage", "3", "--python", sys.executable,
           "--nj", "1", "--datadir", "data", "--dumpdir", "dump", "--expdir", "exp",
           "--train_set", "train", "--valid_set", "dev", "--teacher", TEACHER,
           "--distill_config", str(conf)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-4000:]
    for split, n in (("train", 8), ("dev", 3)):
        assert len((tmp_path / "dump" / split / "cnn.scp").read_text().splitlines()) == n
    config = yaml.safe_load((tmp_path / "exp/distill_x/config.yaml").read_text())
    assert config["teacher_cnn_features"] is True and config["init_from_teacher"] == TEACHER
    lists = config["train_data_path_and_name_and_type"] + config["valid_data_path_and_name_and_type"]
    assert sorted(name for _, name, _ in lists).count("cnn_feats") == 2
    # trained on it, the student's CNN is still the teacher's, bit for bit
    from espnet2_stacking.teachers import load_teacher

    state = torch.load(tmp_path / "exp/distill_x/latest.pth", weights_only=True)
    for k, v in load_teacher(TEACHER).cnn_state_dict().items():
        assert torch.equal(state[f"frontend.{k}"], v), k

    # online: the CNN output comes from the teacher's pass, nothing from stage 2
    res = subprocess.run(cmd[:2] + ["3"] + cmd[3:] + ["--teacher_mode", "online", "--expdir", "exp_online"],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-4000:]
    config = yaml.safe_load((tmp_path / "exp_online/distill_x/config.yaml").read_text())
    assert config["teacher"] == config["init_from_teacher"] == TEACHER and config["teacher_cnn_features"]
    lists = config["train_data_path_and_name_and_type"] + config["valid_data_path_and_name_and_type"]
    assert [name for _, name, _ in lists] == ["speech", "speech"]
    state = torch.load(tmp_path / "exp_online/distill_x/latest.pth", weights_only=True)
    for k, v in load_teacher(TEACHER).cnn_state_dict().items():
        assert torch.equal(state[f"frontend.{k}"], v), k
