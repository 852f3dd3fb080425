import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TEACHER, run_distill_train, run_distill_train_in_process, train_args, write_config
from espnet2_stacking.register import register
from espnet2_stacking.tasks.distill import DistillTask

register()


def read_log(out: Path):
    return [json.loads(x) for x in (out / "stacking.jsonl").read_text().splitlines()]


def test_parser_help_and_print_config(capsys):
    parser = DistillTask.get_parser()
    args = parser.parse_args(["--output_dir", "x"])
    assert args.stacking_method == "interleaved" and args.stacking_depths == [3, 6, 9, 12]
    assert args.unused_parameters is True  # inactive layers get no gradient under DDP
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "--stacking_schedule" in capsys.readouterr().out
    buf = io.StringIO()
    DistillTask.print_config(file=buf)
    printed = yaml.safe_load(buf.getvalue())
    for key in ("stacking_method", "target_layers", "encoder_conf", "loss_conf", "crop_mode"):
        assert key in printed
    assert printed["encoder"] == "stacking_transformer"
    assert printed["encoder_conf"]["linear_units"] == 1536  # the constructor is the schema


def test_config_round_trip(tmp_path):
    buf = io.StringIO()
    DistillTask.print_config(file=buf)
    (tmp_path / "default.yaml").write_text(buf.getvalue())
    parser = DistillTask.get_parser()
    again = vars(parser.parse_args(["--config", str(tmp_path / "default.yaml"), "--output_dir", "x"]))
    plain = vars(parser.parse_args(["--output_dir", "x"]))
    again.pop("config"), plain.pop("config")
    assert again == plain
    ours = parser.parse_args(["--config", str(write_config(tmp_path / "c.yaml", stacking_schedule="prop:1")), "--output_dir", "x"])
    assert ours.stacking_schedule == "prop:1" and ours.encoder_conf["linear_units"] == 32


def test_a_config_key_that_does_not_exist_is_named(tmp_path, capsys):
    parser = DistillTask.get_parser()
    bad = write_config(tmp_path / "bad.yaml", stacking_metod="gradual")  # sic: a typo
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", str(bad), "--output_dir", "x"])
    err = capsys.readouterr().err
    assert "stacking_metod" in err and "bad.yaml" in err
    # a typo inside a component's *_conf reaches its constructor, which names it
    args = parser.parse_args(["--config", str(write_config(
        tmp_path / "c.yaml", encoder_conf={"output_size": 16, "atention_heads": 2})), "--output_dir", "x"])
    with pytest.raises(TypeError, match="atention_heads"):
        DistillTask.build_model(args)


RECIPE_CONFIGS = sorted(Path(__file__).parents[3].glob("egs2/*/distill1/conf/distill_*.yaml"))


@pytest.mark.parametrize("config", RECIPE_CONFIGS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_every_recipe_config_builds(config):
    args = DistillTask.get_parser().parse_args(["--config", str(config), "--output_dir", "x"])
    model = DistillTask.build_model(args)
    assert model.encoder.num_blocks == args.stacking_depths[-1]
    assert model.depth == args.stacking_depths[0]
    assert set(model.plan.pairs) == set(args.stacking_depths)


def test_build_model_checks_depths_and_length(tmp_path):
    args = DistillTask.get_parser().parse_args(["--config", str(write_config(tmp_path / "c.yaml")), "--output_dir", "x"])
    model = DistillTask.build_model(args)
    assert model.depth == 1 and model.encoder.num_blocks == 4
    assert model.plan.boundaries == (4, 8)
    args.encoder_conf = {**args.encoder_conf, "num_blocks": 6}
    with pytest.raises(ValueError, match="num_blocks=6 disagrees"):
        DistillTask.build_model(args)
    args.encoder_conf.pop("num_blocks")
    args.num_iters_per_epoch = None
    with pytest.raises(ValueError, match="num_iters_per_epoch"):
        DistillTask.build_model(args)


def test_staged_distillation_grows_at_the_planned_updates(trained_run):
    out = trained_run
    log = read_log(out)
    # 12 updates, EQL over depths 1, 2, 4: growths after updates 4 and 8
    assert [(r["update"], r["from"], r["to"], r["src"]) for r in log[:-1]] == [
        (4, 1, 2, [0, 0]), (8, 2, 4, [0, 0, 1, 1])]
    assert [r["epoch"] for r in log[:-1]] == [2, 3]
    summary = log[-1]["summary"]
    assert summary["stage_depths"] == [1, 2, 4] and summary["updates"] == 12
    assert len(summary["stage_seconds"]) == 3
    assert abs(sum(summary["stage_seconds"]) - summary["total_seconds"]) < 0.01
    state = torch.load(out / "latest.pth", weights_only=True)
    assert state["encoder.active_depth"].item() == 4.0
    assert not any(k.startswith("teacher") or "_teacher" in k for k in state)


def test_online_teacher_mode(tiny_corpus, tmp_path):
    out = tmp_path / "exp"
    args = train_args(tiny_corpus, write_config(tmp_path / "c.yaml", max_epoch=2, num_iters_per_epoch=2), out, dumped=False)
    res = run_distill_train_in_process(args + ["--teacher", TEACHER])
    assert res.returncode == 0, res.stderr[-3000:]
    # 4 updates, EQL over depths 1, 2, 4: growths after updates 1 and 3
    assert [(r["update"], r["to"]) for r in read_log(out)[:-1]] == [(1, 2), (3, 4)]
    state = torch.load(out / "latest.pth", weights_only=True)
    assert all(k.split(".")[0] in ("frontend", "preencoder", "encoder", "heads", "num_updates", "train_seconds", "skipped_updates", "loss") for k in state)


def test_missing_targets_are_a_clear_error(tiny_corpus, tmp_path):
    args = train_args(tiny_corpus, write_config(tmp_path / "c.yaml", max_epoch=1), tmp_path / "exp", dumped=False)
    res = run_distill_train_in_process(args)
    assert res.returncode != 0
    assert "no teacher targets" in res.stderr


def _weights(path):
    return torch.load(path, weights_only=True)


def _kill_when(cmd, ready, deadline_s: float = 120.0) -> bool:
    """Run cmd and SIGKILL it as soon as ready() holds; False if it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_stage_and_right_after_a_growth_then_resume_gives_identical_weights(tiny_corpus, tmp_path):
    """12 updates over 2 epochs, growths after updates 4 and 8. Killed inside the depth-2 stage
    (epoch 1 saved), resumed, killed again right after the second growth (before epoch 2 is
    saved), resumed: the same weights and growths as a run never killed."""
    over = dict(num_iters_per_epoch=6, max_epoch=2, preencoder_conf={"output_size": 64},
                encoder_conf={"output_size": 64, "attention_heads": 2, "linear_units": 256,
                              "pos_enc_layer_type": "abs_pos", "dropout_rate": 0.1})
    conf = write_config(tmp_path / "c.yaml", **over)
    ref, out = tmp_path / "ref", tmp_path / "killed"
    # every run in a process of its own, as a user runs them: in the test process, settings
    # left by other tests (threads) can change the last bits; the unkilled one goes alongside
    unkilled_log = tmp_path / "unkilled.log"
    with unkilled_log.open("w") as log:
        unkilled = subprocess.Popen([sys.executable, "-m", "espnet2_stacking.bin.distill_train",
                                     *train_args(tiny_corpus, conf, ref)],
                                    stdout=subprocess.DEVNULL, stderr=log)
    try:
        cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", *train_args(tiny_corpus, conf, out)]
        growths = lambda: len((out / "stacking.jsonl").read_text().splitlines()) if (out / "stacking.jsonl").exists() else 0
        killed = _kill_when(cmd, lambda: (out / "1epoch.pth").exists())
        if not killed or (out / "2epoch.pth").exists():
            pytest.skip("the run finished epoch 2 before the first kill landed (machine too fast)")
        assert growths() == 1
        killed = _kill_when(cmd + ["--resume", "true"], lambda: growths() >= 2)
        if not killed or (out / "2epoch.pth").exists():
            pytest.skip("the resumed run finished epoch 2 before the second kill landed (machine too fast)")
        assert growths() == 2
        res = run_distill_train(train_args(tiny_corpus, conf, out) + ["--resume", "true"])
        assert res.returncode == 0, res.stderr[-3000:]
        assert unkilled.wait(timeout=300) == 0, unkilled_log.read_text()[-3000:]
    finally:
        if unkilled.poll() is None:
            unkilled.kill()
            unkilled.wait()
    a, b = _weights(ref / "latest.pth"), _weights(out / "latest.pth")
    assert set(a) == set(b)
    for k in a:
        if k == "train_seconds":
            continue
        assert torch.equal(a[k], b[k]), k
    ref_log, got_log = read_log(ref), read_log(out)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "stage_seconds"} for r in rs[:-1]]
    assert strip(got_log) == strip(ref_log)  # each growth exactly once
    assert [r["update"] for r in got_log[:-1]] == [4, 8]


@pytest.mark.slow
def test_two_process_gloo_distillation_keeps_ranks_identical(tiny_corpus, tmp_path):
    """ESPnet's own distributed mode (external launch, gloo on CPU), with growths."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "exp"
    args = train_args(tiny_corpus, write_config(tmp_path / "c.yaml"), out) + [
        "--dist_backend", "gloo", "--dist_init_method", f"tcp://127.0.0.1:{port}",
        "--dist_world_size", "2", "--multiprocessing_distributed", "false"]
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", *args]
    procs = [subprocess.Popen(cmd + ["--dist_rank", str(r), "--local_rank", str(r)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    # a collective check (all-reduce MIN/MAX of every tensor's sums) at both growths and at the
    # end: it raises on every rank on a mismatch; ESPnet logs INFO on rank 0 only
    assert logs[0].count("all 2 ranks agree after the growth") == 2, logs[0][-3000:]
    assert "all 2 ranks agree at the end of training" in logs[0]
    records = read_log(out)
    assert [(r["update"], r["to"]) for r in records[:-1]] == [(4, 2), (8, 4)]


def test_init_from_teacher_copies_the_cnn_exactly(tmp_path):
    spec = "random:hubert?layers=4&dim=32&conv=16&seed=3"
    conf = write_config(tmp_path / "c.yaml")
    args = DistillTask.get_parser().parse_args(
        ["--config", str(conf), "--output_dir", "x", "--init_from_teacher", spec])
    model = DistillTask.build_model(args).eval()
    from espnet2_stacking.teachers import load_teacher

    teacher = load_teacher(spec)
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model.frontend(wav, torch.tensor([8000]))
        theirs, _ = teacher._module.feature_extractor(wav, torch.tensor([8000]))
    assert torch.allclose(ours, theirs, atol=1e-5)
    args.init_from_teacher = "random:hubert?layers=4&dim=32&conv=24"
    with pytest.raises(ValueError, match="does not fit the student's frontend"):
        DistillTask.build_model(args)


def _poison(tiny_corpus, tmp_path, every: int):
    """A copy of the train dump where every ``every``-th utterance's targets are NaN."""
    import shutil

    import numpy as np

    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "data", root / "data")
    shutil.copytree(tiny_corpus / "dump", root / "dump")
    for t in (2, 4):
        lines = (root / "dump/train" / f"layer_{t}.scp").read_text().splitlines()
        rows = []
        for i, line in enumerate(lines):
            uttid, path = line.split()
            new = root / "dump/train" / f"layer_{t}" / f"{uttid}.npy"
            if i % every == 0:
                np.save(new, np.full_like(np.load(path), np.nan))
            rows.append(f"{uttid} {new}")
        (root / "dump/train" / f"layer_{t}.scp").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_non_finite_updates_are_counted_and_a_run_that_keeps_skipping_stops(tiny_corpus, tmp_path):
    bad = _poison(tiny_corpus, tmp_path / "all", every=1)
    out = tmp_path / "stopped"
    res = run_distill_train_in_process(train_args(bad, write_config(tmp_path / "c.yaml"), out) + ["--max_skipped_updates", "3"])
    assert res.returncode != 0
    assert "3 updates in a row were skipped for a non-finite gradient" in res.stderr

    some = _poison(tiny_corpus, tmp_path / "some", every=6)  # 2 of 12 utterances
    out = tmp_path / "finished"
    res = run_distill_train_in_process(train_args(some, write_config(tmp_path / "c2.yaml", batch_size=1, num_iters_per_epoch=6, max_epoch=2), out))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = read_log(out)[-1]["summary"]
    assert summary["skipped_updates"] >= 1 and summary["updates"] + summary["skipped_updates"] == 12
    assert "update skipped (non-finite gradient)" in res.stderr


CNN_TEACHER = "random:hubert?layers=4&dim=32&conv=16&seed=3"  # its CNN fits the tiny student's


@pytest.fixture(scope="module")
def cnn_dump(tiny_corpus, tmp_path_factory):
    """CNN_TEACHER's states 2 and 4 and its CNN output for tiny_corpus's train and dev."""
    from espnet2_stacking.distill.dump import dump_teacher_states

    root = tmp_path_factory.mktemp("cnn_dump")
    for split in ("train", "dev"):
        dump_teacher_states(tiny_corpus / "data" / split, root / split, CNN_TEACHER, [2, 4],
                            cnn_features=True)
    return root


def cnn_train_args(tiny_corpus, cnn_dump, config, out, cnn=True):
    args = train_args(tiny_corpus, config, out, dumped=False)
    for tag, split in (("train", "train"), ("valid", "dev")):
        names = [f"layer_{t}.scp,target_{t}" for t in (2, 4)] + (["cnn.scp,cnn_feats"] if cnn else [])
        for name in names:
            args += [f"--{tag}_data_path_and_name_and_type", f"{cnn_dump}/{split}/{name},npy"]
    return args


def test_dumped_cnn_features_stand_in_for_the_frozen_teacher_cnn(tmp_path):
    """With --teacher_cnn_features the frontend is the teacher's CNN, frozen, and the loss from
    the teacher's CNN output equals the loss from running that frontend."""
    from espnet2_stacking.teachers import load_teacher

    argv = ["--config", str(write_config(tmp_path / "c.yaml")), "--output_dir", "x",
            "--init_from_teacher", CNN_TEACHER, "--teacher_cnn_features", "true"]
    model = DistillTask.build_model(DistillTask.get_parser().parse_args(argv)).eval()
    assert not any(p.requires_grad for p in model.frontend.parameters())
    teacher = load_teacher(CNN_TEACHER)
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 8000])  # unpadded: the group norm's statistics agree
    states, cnn, frames = teacher.extract_features_and_cnn(wav, lengths)
    batch = {f"target_{t}": states[t] for t in (2, 4)}
    batch.update({f"target_{t}_lengths": frames for t in (2, 4)})
    with torch.no_grad():
        computed = model(wav, lengths, **batch)[0]
        read = model(wav, lengths, cnn_feats=cnn, cnn_feats_lengths=frames, **batch)[0]
    assert torch.allclose(computed, read, rtol=1e-5), (computed, read)
    model.frontend.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frontend is trainable"):
        model(wav, lengths, cnn_feats=cnn, cnn_feats_lengths=frames, **batch)


def test_online_teacher_gives_the_frozen_cnn_output_from_its_own_pass(tmp_path):
    """Online, --teacher_cnn_features takes the CNN output from the teacher's pass: the same
    loss as running the student's frozen copy of that CNN, which is not run."""
    argv = ["--config", str(write_config(tmp_path / "c.yaml")), "--output_dir", "x",
            "--teacher", CNN_TEACHER, "--init_from_teacher", CNN_TEACHER]
    parser = DistillTask.get_parser()
    computes = DistillTask.build_model(parser.parse_args(argv + ["--freeze_param", "frontend"])).eval()
    computes.frontend.requires_grad_(False)  # what ESPnet's main_worker does with --freeze_param
    args = parser.parse_args(argv + ["--teacher_cnn_features", "true"])
    DistillTask.check_teacher_cnn_features(args)  # no dumped list needed online
    DistillTask.build_collate_fn(args, train=True)
    reuses = DistillTask.build_model(args).eval()
    reuses.load_state_dict(computes.state_dict())
    calls = []
    reuses.frontend.register_forward_hook(lambda *_: calls.append(1))
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 8000])  # unpadded: the group norm's statistics agree
    with torch.no_grad():
        a, b = computes(wav, lengths)[0], reuses(wav, lengths)[0]
    assert torch.allclose(a, b, rtol=1e-5), (a, b)
    assert calls == []
    args.init_from_teacher = CNN_TEACHER.replace("seed=3", "seed=4")
    with pytest.raises(Exception, match="is not --init_from_teacher"):
        DistillTask.check_teacher_cnn_features(args)


def test_dumped_cnn_features_are_refused_where_they_cannot_be_the_student_cnn(tiny_corpus, cnn_dump, tmp_path):
    conf = write_config(tmp_path / "c.yaml")
    parser = DistillTask.get_parser()

    def args_of(*extra, cnn=True, config=conf):
        return parser.parse_args(cnn_train_args(tiny_corpus, cnn_dump, config, tmp_path / "x", cnn) + list(extra))

    with pytest.raises(Exception, match="--teacher_cnn_features is false"):
        DistillTask.check_teacher_cnn_features(args_of())
    with pytest.raises(Exception, match="give --init_from_teacher"):
        DistillTask.check_teacher_cnn_features(args_of("--teacher_cnn_features", "true"))
    with pytest.raises(Exception, match=r"holds the CNN output of random:.*conv=16.*--init_from_teacher random:hubert\?layers=4&dim=32&conv=16&seed=4"):
        DistillTask.check_teacher_cnn_features(args_of(
            "--teacher_cnn_features", "true", "--init_from_teacher", CNN_TEACHER.replace("seed=3", "seed=4")))
    DistillTask.check_teacher_cnn_features(args_of("--teacher_cnn_features", "true", "--init_from_teacher", CNN_TEACHER))
    with pytest.raises(ValueError, match="lacks 'cnn_feats'"):
        DistillTask.build_collate_fn(args_of("--teacher_cnn_features", "true", cnn=False), train=True)
    wider = write_config(tmp_path / "wide.yaml", frontend_conf={
        "norm_mode": "group_norm", "conv_mode": "standard", "bias": False,
        "shapes": [[24, 10, 5]] + [[24, 3, 2]] * 4 + [[24, 2, 2]] * 2})
    with pytest.raises(ValueError, match=r"cnn/.*expected \(frames, 24\)"):
        DistillTask.check_inputs(args_of("--teacher_cnn_features", "true", config=wider))
