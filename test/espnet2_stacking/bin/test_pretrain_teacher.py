"""End to end: pretrain the smoke teacher with ESPnet's SSL task, load it, probe it, resume."""

from pathlib import Path

import pytest
import torch
from conftest import write_data_dir

from espnet2_stacking.bin import pretrain_teacher, probe_teacher
from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.pipelines.teacher_pretrain import PretrainError
from espnet2_stacking.upstreams.load import load_upstream

SMOKE = Path(__file__).parents[3] / "egs2/demo/distill1/conf/teacher_hubert_smoke.yaml"


def test_help(capsys):
    for module in (pretrain_teacher, probe_teacher):
        with pytest.raises(SystemExit):
            module.main(["--help"])
    assert "--labels" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # its labels come from the extra dirs
        pretrain_teacher.main(["--data_dir", "a", "--valid_dir", "b", "--config", "c",
                               "--out_dir", "d", "--probe_dir", "data/test"])
    assert "--probe_dir data/test must be one of --extra_dirs" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_load_probe_and_resume(tmp_path, capsys):
    train = write_data_dir(tmp_path / "data", "train", 10)
    dev = write_data_dir(tmp_path / "data", "dev", 4, seed=1)
    out = tmp_path / "teacher"
    args = ["--data_dir", str(train), "--valid_dir", str(dev), "--config", str(SMOKE),
            "--out_dir", str(out)]
    pretrain_teacher.main(args)
    model = out / "model.pth"
    assert capsys.readouterr().out.strip().endswith(f"pretrain_teacher: {model}")
    assert (out / "config.yaml").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml", "labels", "model.pth", "pretrain.json", "stats", "times.tsv", "train"]

    teacher = load_upstream(str(model))
    assert (teacher.num_layers, teacher.hidden_size) == (2, 32)
    lengths = torch.tensor([16000, 9000])
    states, frames = teacher.extract_features(torch.randn(2, 16000), lengths)
    assert len(states) == 3 and states[0].shape == (2, num_frames(16000), 32)
    assert frames.tolist() == [num_frames(16000), num_frames(9000)]

    # a rerun with --resume finds everything done; without it, the dir is refused
    train_log = (out / "train" / "train.log").stat().st_mtime_ns
    pretrain_teacher.main(args + ["--resume"])
    assert (out / "train" / "train.log").stat().st_mtime_ns == train_log
    with pytest.raises(PretrainError, match="--resume"):
        pretrain_teacher.main(args)

    probe_teacher.main(["--teacher", str(model), "--data_dir", str(dev),
                        "--labels", str(out / "labels" / "valid" / "text"),
                        "--out_dir", str(out / "probe"),
                        "--num_threads", str(torch.get_num_threads())])  # leave it as it was
    printed = capsys.readouterr().out
    assert "layer | trained acc | random acc" in printed and "h_2" in printed
    assert (out / "probe" / "probe.png").exists()
    import json

    result = json.loads((out / "probe" / "probe.json").read_text())
    assert len(result["trained"]["cka"]) == 3 and len(result["random"]["probe_accuracy"]) == 3
    assert isinstance(result["trained_beats_random"], bool)
