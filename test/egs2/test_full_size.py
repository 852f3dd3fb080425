"""The paper's setting at full size, on a CPU, in a few updates: a HuBERT-Base-shaped teacher
(random weights: 12 x 768, FFN 3072, CNN 512) and the LibriSpeech recipe's 12 x 384 student,
grown 3 -> 6 -> 9 -> 12, with dumped targets (the teacher's CNN frozen, its output dumped) and
with the teacher online, then exported. It proves that the real shapes connect; speed at full
size is bench/run_gpu.sh's job."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_data_dir

from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

RECIPE_CONF = Path(__file__).parents[2] / "egs2" / "librispeech" / "distill1" / "conf"
HUBERT_BASE = ("random:hubert?layers=12&dim=768&heads=12&ffn=3072&conv=512&pos_kernel=128"
               "&pos_groups=16&seed=0")
# 4 updates (1 per epoch): EQL stages of one update each, growths after updates 1, 2 and 3
SMALL_RUN = ["--batch_size", "2", "--num_iters_per_epoch", "1", "--max_epoch", "4",
             "--crop_max_samples", "16000", "--num_workers", "0", "--use_amp", "false",
             "--ngpu", "0", "--keep_nbest_models", "1"]


def distill(config: Path, out: Path, data: Path, extra: list) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", "--config", str(config),
           "--output_dir", str(out), *SMALL_RUN,
           "--train_data_path_and_name_and_type", f"{data}/train/wav.scp,speech,sound",
           "--train_shape_file", f"{data}/train/utt2num_samples",
           "--valid_data_path_and_name_and_type", f"{data}/dev/wav.scp,speech,sound",
           "--valid_shape_file", f"{data}/dev/utt2num_samples", *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def grew_to_12(out: Path) -> None:
    log = [json.loads(x) for x in (out / "stacking.jsonl").read_text().splitlines()]
    assert [(r["update"], r["from"], r["to"]) for r in log[:-1]] == [(1, 3, 6), (2, 6, 9), (3, 9, 12)]
    assert log[-1]["summary"]["stage_depths"] == [3, 6, 9, 12] and log[-1]["summary"]["updates"] == 4


@pytest.mark.slow
def test_hubert_base_teacher_and_the_papers_student_connect_dumped_online_and_exported(tmp_path):
    data = tmp_path / "data"
    write_data_dir(data, "train", 4)
    write_data_dir(data, "dev", 2, seed=1)
    for split in ("train", "dev"):
        dump_teacher_states(data / split, tmp_path / "dump" / split, HUBERT_BASE, [4, 8, 12],
                            cnn_features=True, hidden_size=768, num_teacher_layers=12)

    dumped = tmp_path / "exp_dumped"
    res = distill(RECIPE_CONF / "distill_interleaved_eql_frozen_cnn.yaml", dumped, data,
                  ["--train_dump_dir", str(tmp_path / "dump/train"), "--valid_dump_dir", str(tmp_path / "dump/dev")])
    assert res.returncode == 0, res.stderr[-4000:]
    grew_to_12(dumped)
    config = yaml.safe_load((dumped / "config.yaml").read_text())
    assert config["student_cnn"] == "teacher_frozen" and config["encoder_conf"]["output_size"] == 384
    assert "cnn_feats" in {entry[1] for entry in config["train_data_path_and_name_and_type"]}

    online = tmp_path / "exp_online"
    res = distill(RECIPE_CONF / "distill_interleaved_eql.yaml", online, data, ["--teacher", HUBERT_BASE])
    assert res.returncode == 0, res.stderr[-4000:]
    grew_to_12(online)

    from espnet2_stacking.pipelines.export import export_student
    from espnet2_stacking.upstreams import load_upstream

    model_file = export_student(dumped / "config.yaml", dumped / "latest.pth", tmp_path / "student")
    student = load_upstream(str(model_file))
    assert (student.num_layers, student.hidden_size) == (12, 384)
    info = json.loads((tmp_path / "student" / "stacking.json").read_text())
    assert info["depth"] == 12 and info["lineage"] == [0] * 4 + [1] * 4 + [2] * 4
    assert 26.0e6 < info["parameters"] < 27.5e6  # the paper's 26.87M student
    states, _ = student.extract_features(torch.zeros(1, 16000), torch.tensor([16000]), num_layers=12)
    assert len(states) == 13 and states[-1].shape == (1, 49, 384)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"peak resident memory of a full-size distill_train process: {peak_gb:.2f} GB")
    assert peak_gb < 8, peak_gb
