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


def _asr_train_cmd(tmp_path, data_root, out):
    import yaml

    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\nA\nT\nO\nN\nE\n<space>\n<sos/eos>\n")
    conf = {"frontend": "stacking_upstream", "frontend_conf": {"upstream": UPSTREAM},
            "normalize": "utterance_mvn", "preencoder": "linear", "preencoder_conf": {"output_size": 8},
            "encoder": "rnn", "encoder_conf": {"num_layers": 1, "hidden_size": 8, "output_size": 8},
            "decoder": "none", "model_conf": {"ctc_weight": 1.0}, "optim": "adam",
            "optim_conf": {"lr": 0.01}, "batch_type": "sorted", "batch_size": 2,
            "num_iters_per_epoch": 4, "max_epoch": 3, "seed": 3, "token_type": "char"}
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(conf))
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.asr_train", "--config", str(tmp_path / "asr.yaml"),
           "--token_list", str(tmp_path / "tokens.txt"), "--ngpu", "0", "--output_dir", str(out)]
    for tag, split in (("train", "train"), ("valid", "dev")):
        d = data_root / split
        cmd += [f"--{tag}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                f"--{tag}_data_path_and_name_and_type", f"{d}/text,text,text",
                f"--{tag}_shape_file", f"{d}/utt2num_samples"]
    return cmd


@pytest.mark.slow
def test_sigkill_during_asr_training_then_resume_matches_an_unkilled_run(tmp_path):
    """ESPnet's resume (the last finished epoch's checkpoint.pth) through the plugin's task:
    the frozen upstream stays out of the checkpoint and the resumed run ends where an
    unkilled one does."""
    import os
    import signal
    import subprocess
    import time

    import torch
    from conftest import write_data_dir

    write_data_dir(tmp_path / "data", "train", 8)
    write_data_dir(tmp_path / "data", "dev", 2, seed=1)
    # the unkilled run goes alongside the one to kill
    ref = subprocess.Popen(_asr_train_cmd(tmp_path, tmp_path / "data", tmp_path / "ref"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "killed"
    cmd = _asr_train_cmd(tmp_path, tmp_path / "data", out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "1epoch.pth").exists():  # checkpoint.pth is written just before it
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    ref_err = ref.communicate(timeout=300)[1]
    assert ref.returncode == 0, ref_err[-3000:]
    if proc.returncode != -signal.SIGKILL or (out / "3epoch.pth").exists():
        pytest.skip("the run finished before the kill landed (machine too fast)")
    res = subprocess.run(cmd + ["--resume", "true"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "The training was finished at 3 epochs" in res.stderr
    a = torch.load(tmp_path / "ref/3epoch.pth", weights_only=True)
    b = torch.load(out / "3epoch.pth", weights_only=True)
    # of the frontend only the layer weights train; the upstream itself is not saved
    assert set(a) == set(b) and [k for k in a if k.startswith("frontend.")] == ["frontend.featurizer.weights"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
