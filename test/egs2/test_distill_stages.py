"""Stages 2-3 of the stage driver with ``student_cnn: teacher_frozen``: stage 2 dumps the
teacher's CNN output beside its states, stage 3 passes the dump dirs and the task reads it in
place of the student's frozen CNN; with the teacher online, stage 3 takes it from the teacher's
pass."""

import json
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
    conf = write_config(tmp_path / "conf" / "distill_x.yaml", student_cnn="teacher_frozen",
                        max_epoch=1, num_iters_per_epoch=3)
    cmd = [str(DISTILL_SH), "--stage", "2", "--stop_stage", "3", "--python", sys.executable,
           "--nj", "1", "--datadir", "data", "--dumpdir", "dump", "--expdir", "exp",
           "--train_set", "train", "--valid_set", "dev", "--teacher", TEACHER,
           "--distill_config", str(conf)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-4000:]
    for split, n in (("train", 8), ("dev", 3)):
        assert len((tmp_path / "dump" / split / "cnn.scp").read_text().splitlines()) == n
    assert json.loads((tmp_path / "dump/train/meta.json").read_text())["teacher"] == TEACHER
    config = yaml.safe_load((tmp_path / "exp/distill_x/config.yaml").read_text())
    assert config["student_cnn"] == "teacher_frozen" and config["teacher"] is None
    assert (config["train_dump_dir"], config["valid_dump_dir"]) == ("dump/train", "dump/dev")
    for tag, split in (("train", "train"), ("valid", "dev")):
        # the task expanded the dump dir into the targets of stacking_conf and the CNN output
        assert config[f"{tag}_data_path_and_name_and_type"] == [
            [f"data/{split}/wav.scp", "speech", "sound"],
            [f"dump/{split}/layer_2.scp", "target_2", "cropped_npy"],
            [f"dump/{split}/layer_4.scp", "target_4", "cropped_npy"],
            [f"dump/{split}/cnn.scp", "cnn_feats", "cropped_npy"]]
    # trained on it, the student's CNN is still the teacher's, bit for bit
    from espnet2_stacking.upstreams import load_upstream

    state = torch.load(tmp_path / "exp/distill_x/latest.pth", weights_only=True)
    for k, v in load_upstream(TEACHER).cnn_state_dict().items():
        assert torch.equal(state[f"frontend.{k}"], v), k

    # online: the CNN output comes from the teacher's pass, nothing from stage 2; an epoch is
    # one pass over the 8 training utterances in batches of 4 (--epoch_from_data, as LibriSpeech's
    # run.sh sets it), not the config's 3 batches; 2 epochs for the 3 stages
    res = subprocess.run(cmd[:2] + ["3"] + cmd[3:] + ["--teacher_mode", "online", "--expdir", "exp_online",
                                                      "--epoch_from_data", "true", "--distill_args", "--max_epoch 2"],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-4000:]
    assert "an epoch is one pass over 8 utterances: num_iters_per_epoch 2" in res.stderr
    config = yaml.safe_load((tmp_path / "exp_online/distill_x/config.yaml").read_text())
    assert config["num_iters_per_epoch"] == 2 and config["batch_size"] == 4
    assert config["teacher"] == TEACHER and config["student_cnn"] == "teacher_frozen"
    assert config["train_dump_dir"] is None and config["valid_dump_dir"] is None
    lists = config["train_data_path_and_name_and_type"] + config["valid_data_path_and_name_and_type"]
    assert [name for _, name, _ in lists] == ["speech", "speech"]
    state = torch.load(tmp_path / "exp_online/distill_x/latest.pth", weights_only=True)
    for k, v in load_upstream(TEACHER).cnn_state_dict().items():
        assert torch.equal(state[f"frontend.{k}"], v), k


def test_distill_without_a_dump_is_refused_early(tmp_path):
    """Stage 3 reading dumped targets names the missing dump and the way out, before training."""
    (tmp_path / "conf").mkdir()
    conf = write_config(tmp_path / "conf" / "distill_x.yaml")
    (tmp_path / "dump/train").mkdir(parents=True)  # a dump dir that stage 2 never finished
    res = subprocess.run([str(DISTILL_SH), "--stage", "3", "--stop_stage", "3", "--python", sys.executable,
                          "--dumpdir", "dump", "--expdir", "exp", "--train_set", "train",
                          "--valid_set", "dev", "--distill_config", str(conf)],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 1
    assert "dump/train/meta.json missing: run stage 2 (or --teacher_mode online)" in res.stderr, res.stderr
    assert not (tmp_path / "exp/distill_x").exists()
