"""pretrain_teacher's checks and its resumable label step (no ESPnet training here)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_data_dir

from espnet2_stacking.pipelines.teacher_labels import LabelError, read_labels
from espnet2_stacking.pipelines.teacher_pretrain import (
    PretrainError,
    hubert_num_classes,
    make_labels,
    pretrain_teacher,
)

SMOKE = Path(__file__).parents[3] / "egs2/demo/distill1/conf/teacher_hubert_smoke.yaml"
DEMO = SMOKE.with_name("teacher_hubert_demo.yaml")
FULL = SMOKE.with_name("teacher_hubert_full.yaml")  # ./run.sh --full true
BENCH = Path(__file__).parents[3] / "bench/conf/teacher_hubert_6x128.yaml"


def test_configs_name_their_clusters():
    assert hubert_num_classes(SMOKE) == 8
    assert hubert_num_classes(DEMO) == 64
    assert hubert_num_classes(FULL) == 64


def test_the_full_teacher_is_the_demo_teacher_with_a_longer_schedule():
    # --full's teacher must stay the shape the demo's distillation config expects; only the
    # warmup and the number of updates differ
    demo, full = (yaml.safe_load(c.read_text()) for c in (DEMO, FULL))
    assert (demo["scheduler_conf"]["warmup_steps"], full["scheduler_conf"]["warmup_steps"]) == (50, 500)
    assert (demo["max_epoch"], full["max_epoch"]) == (6, 96)
    for conf in (demo, full):
        del conf["scheduler_conf"]["warmup_steps"], conf["max_epoch"]
    assert demo == full


@pytest.mark.parametrize("teacher, distill", [
    (DEMO, DEMO.with_name("distill_interleaved_eql.yaml")),
    (FULL, DEMO.with_name("distill_interleaved_eql.yaml")),
    (BENCH, BENCH.with_name("distill_6x64_from_6x128.yaml")),
], ids=["demo", "full", "bench"])
def test_the_teacher_fits_its_distillation(teacher, distill):
    conf = yaml.safe_load(teacher.read_text())
    distill = yaml.safe_load(distill.read_text())
    assert conf["encoder_conf"]["output_size"] == distill["teacher_hidden_size"]
    assert conf["encoder_conf"]["num_blocks"] == distill["teacher_num_layers"]
    assert conf["frontend_conf"]["shapes"] == distill["frontend_conf"]["shapes"]
    assert conf["encoder_conf"]["input_layer"] == "wav2vec"


def test_cluster_count_must_match_the_loss(tmp_path):
    with pytest.raises(PretrainError, match="--num_clusters 5 differs.*num_classes 8"):
        pretrain_teacher(tmp_path, tmp_path, SMOKE, tmp_path / "out", num_clusters=5)


def test_a_used_out_dir_needs_resume_and_the_same_settings(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 4)
    other = tmp_path / "conf.yaml"
    other.write_text(SMOKE.read_text() + "\n# changed\n")
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)  # no pretrain.json: not ours
    with pytest.raises(PretrainError, match="not empty"):
        pretrain_teacher(data, data, SMOKE, out)
    (out / "labels").rmdir()
    with pytest.raises(Exception):  # noqa: B017 - stops in a later sub-step; the record is written first
        pretrain_teacher(data, data, SMOKE, out, extra_dirs=[tmp_path / "missing"])
    with pytest.raises(PretrainError, match="pass --resume"):
        pretrain_teacher(data, data, SMOKE, out)
    with pytest.raises(PretrainError, match="config_sha256 differ"):
        pretrain_teacher(data, data, other, out, resume=True)


def test_labels_are_made_once_and_skipped_after(tmp_path, caplog):
    train = write_data_dir(tmp_path / "data", "train", 6)
    dev = write_data_dir(tmp_path / "data", "dev", 3, seed=1)
    labels = tmp_path / "labels"
    make_labels(train, dev, labels, 8, extra_dirs=[dev])
    assert sorted(p.name for p in labels.iterdir()) == [
        "dev", "kmeans.npz", "tokens.txt", "train", "valid"]
    assert read_labels(labels / "dev" / "text") == read_labels(labels / "valid" / "text")
    stamp = (labels / "train" / "text").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        make_labels(train, dev, labels, 8, extra_dirs=[dev])
    assert "all sets finished" in caplog.text
    assert (labels / "train" / "text").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("config", [SMOKE, DEMO, BENCH], ids=lambda p: p.name)
def test_teacher_configs_build_as_teachers(config, tmp_path):
    from espnet2.tasks.ssl import SSLTask

    from espnet2_stacking.pipelines.teacher_labels import write_token_list
    from espnet2_stacking.upstreams.espnet_ssl import ESPnetSSLUpstream

    conf = yaml.safe_load(config.read_text())
    write_token_list(tmp_path / "tokens.txt", hubert_num_classes(config))
    args = SSLTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tmp_path / "tokens.txt"),
         "--output_dir", str(tmp_path)])
    teacher = ESPnetSSLUpstream(SSLTask.build_model(args), source=str(config))  # checks 320x
    assert teacher.num_layers == conf["encoder_conf"]["num_blocks"]
    assert teacher.hidden_size == conf["encoder_conf"]["output_size"]
    assert args.normalize is None and args.token_type == "word"
    assert args.best_model_criterion == [["valid", "loss", "min"]]


def test_tensorboard_is_off_unless_the_config_asks(tmp_path):
    """ESPnet's SSL task defaults to tensorboard, which is not installed with this project."""
    from espnet2_stacking.pipelines.teacher_pretrain import _logging_defaults

    plain = tmp_path / "plain.yaml"
    plain.write_text("\n".join(line for line in SMOKE.read_text().splitlines()
                               if not line.startswith("use_tensorboard")))
    assert _logging_defaults(plain) == ["--use_tensorboard", "false"]
    asks = tmp_path / "asks.yaml"
    asks.write_text(plain.read_text() + "\nuse_tensorboard: true\n")
    assert _logging_defaults(asks) == []


def test_espnet_failing_is_an_error_with_its_log_and_leaves_logging_as_it_was(tmp_path):
    import logging

    from espnet2_stacking.pipelines.teacher_pretrain import _ssl_train

    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    log = tmp_path / "train.log"
    with pytest.raises(PretrainError, match=r"ssl_train exited with 2; the end of .*train.log"):
        _ssl_train(["--no_such_option", "1"], log, 1)
    assert "# espnet2.bin.ssl_train --no_such_option 1" in log.read_text()
    assert (root.handlers[:], root.level) == before


LABEL_UPSTREAM = "random:hubert?layers=2&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2&seed=1"


def test_the_next_iteration_clusters_an_upstreams_state(tmp_path):
    train = write_data_dir(tmp_path / "data", "train", 6)
    dev = write_data_dir(tmp_path / "data", "dev", 3, seed=1)
    mfcc, states = tmp_path / "mfcc", tmp_path / "states"
    make_labels(train, dev, mfcc, 8)
    make_labels(train, dev, states, 8, label_upstream=LABEL_UPSTREAM, label_layer=1)
    km = np.load(states / "kmeans.npz")
    assert km["centers"].shape == (8, 16)  # the upstream's width, not MFCC's 39
    for name in ("train", "valid"):  # one label per CNN frame, as for MFCCs
        a, b = read_labels(mfcc / name / "text"), read_labels(states / name / "text")
        assert {u: len(x) for u, x in a.items()} == {u: len(x) for u, x in b.items()}
    assert read_labels(mfcc / "train" / "text") != read_labels(states / "train" / "text")
    with pytest.raises(LabelError, match=r"label layer 3: the upstream has states 0..2"):
        make_labels(train, dev, tmp_path / "bad", 8, label_upstream=LABEL_UPSTREAM, label_layer=3)


def test_a_run_made_from_mfcc_labels_refuses_to_resume_with_an_upstreams(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 4)
    out = tmp_path / "out"
    with pytest.raises(Exception):  # noqa: B017 - stops in a later sub-step; the record is written first
        pretrain_teacher(data, data, SMOKE, out, extra_dirs=[tmp_path / "missing"])
    with pytest.raises(PretrainError, match="label_upstream differ"):
        pretrain_teacher(data, data, SMOKE, out, resume=True, label_upstream=LABEL_UPSTREAM)


def test_the_entry_point_wants_an_upstream_for_a_label_layer(tmp_path, capsys):
    from espnet2_stacking.bin.pretrain_teacher import main

    with pytest.raises(SystemExit):
        main(["--data_dir", str(tmp_path), "--valid_dir", str(tmp_path), "--config", str(SMOKE),
              "--out_dir", str(tmp_path / "out"), "--label_layer", "3"])
    assert "--label_layer needs --label_upstream" in capsys.readouterr().err
