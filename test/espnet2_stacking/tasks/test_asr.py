import io
import multiprocessing
import sys

import pytest

from espnet2.tasks.asr import ASRTask
from espnet2_stacking.tasks.asr import StackingASRTask

UPSTREAM = "random:hubert?layers=2&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2"


def model_args(tmp_path):
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\nA\n<space>\n<sos/eos>\n")
    return StackingASRTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"), "--token_list", str(tmp_path / "tokens.txt"),
        "--frontend", "stacking_upstream", "--frontend_conf", f"upstream={UPSTREAM}",
        "--normalize", "none", "--preencoder", "linear", "--preencoder_conf", "output_size=8",
        "--encoder", "rnn", "--encoder_conf", "num_layers=1",
        "--encoder_conf", "hidden_size=8", "--encoder_conf", "output_size=8",
        "--decoder", "none", "--model_conf", "ctc_weight=1.0",
    ])


def test_the_parser_accepts_and_lists_the_frontend(tmp_path, capsys):
    args = model_args(tmp_path)
    assert args.frontend == "stacking_upstream" and args.frontend_conf == {"upstream": UPSTREAM}
    model = StackingASRTask.build_model(args)
    assert type(model.frontend).__name__ == "StackingUpstreamFrontend"
    # the linear preencoder was given the upstream's width, and args (-> config.yaml) say so
    assert args.preencoder_conf == {"output_size": 8, "input_size": 16}
    assert model.preencoder.linear_out.in_features == 16
    with pytest.raises(SystemExit):
        StackingASRTask.get_parser().parse_args(["--help"])
    assert "stacking_upstream" in capsys.readouterr().out


def test_print_config_shows_the_frontend_options(monkeypatch):
    # what `asr_train --print_config --frontend stacking_upstream` prints (ESPnet reads sys.argv)
    monkeypatch.setattr(sys, "argv", ["asr_train", "--print_config", "--frontend", "stacking_upstream"])
    buf = io.StringIO()
    StackingASRTask.print_config(file=buf)
    out = buf.getvalue()
    assert "frontend: stacking_upstream" in out and "upstream_dtype: float32" in out
    assert "upstream_normalize: none" in out


@pytest.mark.slow
def test_a_spawned_worker_builds_the_model(tmp_path):
    """ESPnet's multi-GPU workers are spawned and import only the task class's module."""
    args = model_args(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    # the same target ESPnet gives its workers is too long to run here; build_model is what
    # needs the registration, and it is found the same way (pickled by reference)
    ours = ctx.Process(target=StackingASRTask.build_model, args=(args,))
    theirs = ctx.Process(target=ASRTask.build_model, args=(args,))  # shows the check can fail
    for p in (ours, theirs):
        p.start()
    for p in (ours, theirs):
        p.join(timeout=120)
    assert ours.exitcode == 0
    assert theirs.exitcode not in (0, None)
