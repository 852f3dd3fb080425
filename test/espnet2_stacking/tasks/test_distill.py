import argparse
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
from conftest import (
    CNN_TEACHER,
    TEACHER,
    distill_config,
    run_distill_train,
    run_distill_train_in_process,
    train_args,
    write_config,
)

from espnet2_stacking.stacking import StackingConfigError
from espnet2_stacking.tasks.distill import DistillTask
from espnet2_stacking.tasks.distill_config import STACKING_DEFAULTS, read_distill_config
from espnet2_stacking.tasks.register import register

register()


def read_log(out: Path):
    return [json.loads(x) for x in (out / "stacking.jsonl").read_text().splitlines()]


def test_parser_help_and_print_config(capsys):
    parser = DistillTask.get_parser()
    args = parser.parse_args(["--output_dir", "x"])
    assert args.stacking_conf == {} and DistillTask.stacking_kwargs(args) == STACKING_DEFAULTS
    assert STACKING_DEFAULTS["method"] == "interleaved" and STACKING_DEFAULTS["depths"] == [3, 6, 9, 12]
    assert args.unused_parameters is True  # inactive layers get no gradient under DDP
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--stacking_conf" in out and "--student_cnn" in out and "--train_dump_dir" in out
    assert "--stacking_schedule" not in out  # an old name: accepted only to be refused
    buf = io.StringIO()
    DistillTask.print_config(file=buf)
    printed = yaml.safe_load(buf.getvalue())
    for key in ("stacking_conf", "student_cnn", "optimizer_state_rule", "encoder_conf", "loss_conf", "crop_mode"):
        assert key in printed
    assert not {"stacking_method", "target_layers", "init_from_teacher"} & set(printed)
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
    ours = parser.parse_args(["--config", str(write_config(tmp_path / "c.yaml", stacking={"schedule": "prop:1"})), "--output_dir", "x"])
    assert ours.stacking_conf["schedule"] == "prop:1" and ours.encoder_conf["linear_units"] == 32
    assert DistillTask.stacking_kwargs(ours)["depths"] == [1, 2, 4]


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
    # a typo inside stacking_conf is named with the keys it could be
    args = parser.parse_args(["--config", str(write_config(tmp_path / "s.yaml", stacking={"metod": "gradual"})),
                              "--output_dir", "x"])
    with pytest.raises(StackingConfigError, match=r"stacking_conf: unknown key\(s\) \['metod'\].*'method'"):
        DistillTask.resolve_args(args)


@pytest.mark.parametrize("old,value,new", [
    ("stacking_method", "gradual", "stacking_conf.method"),
    ("stacking_depths", "[2, 4]", "stacking_conf.depths"),
    ("target_layers", "[2, 4]", "stacking_conf.targets"),
    ("alignment_mode", "pred", "stacking_conf.mode"),
    ("stacking_schedule", "prop:1", "stacking_conf.schedule"),
    ("init_from_teacher", "random:hubert", "student_cnn"),
    ("teacher_cnn_features", "true", "student_cnn teacher_frozen"),
])
def test_options_of_earlier_versions_name_their_replacement(tmp_path, old, value, new):
    """A config or command line written for an earlier version fails before any work, with the
    option that replaced the old one, in the config (distill_train) and in tools that read it."""
    config = tmp_path / "old.yaml"
    config.write_text(yaml.safe_dump(distill_config()) + f"{old}: {value}\n")
    args = DistillTask.get_parser().parse_args(["--config", str(config), "--output_dir", "x"])
    with pytest.raises(StackingConfigError, match=f"--{old} .*replaced by {new}"):
        DistillTask.resolve_args(args)
    res = run_distill_train_in_process(["--config", str(write_config(tmp_path / "c.yaml")), "--output_dir",
                                        str(tmp_path / "exp"), f"--{old}", value])
    assert res.returncode != 0 and f"replaced by {new}" in res.stderr
    with pytest.raises(StackingConfigError, match=f"old.yaml: --{old} .*replaced by {new}"):
        read_distill_config(config)


@pytest.mark.parametrize("max_epoch,iters,accum,updates", [(4, 3, 1, 12), (4, 3, 2, 4), (3, 10, 3, 9), (3, 6, 4, 3)])
def test_run_length_counts_updates_as_espnet_performs_them(tmp_path, max_epoch, iters, accum, updates):
    """ESPnet steps once every accum_grad batches, the count restarting each epoch: an epoch of
    n batches makes n // accum_grad updates (max_epoch * n // accum_grad overcounts, so the LR
    never reached 0 and the growths came late)."""
    args = DistillTask.get_parser().parse_args(["--config", str(write_config(
        tmp_path / "c.yaml", max_epoch=max_epoch, num_iters_per_epoch=iters, accum_grad=accum)), "--output_dir", "x"])
    assert DistillTask.total_updates(args) == updates
    assert DistillTask.build_plan(args).total_updates == updates
    args.num_iters_per_epoch = accum - 1
    with pytest.raises(StackingConfigError, match="no epoch would make an update"):
        DistillTask.total_updates(args)


RECIPE_CONFIGS = sorted(Path(__file__).parents[3].glob("egs2/*/distill1/conf/distill_*.yaml"))


@pytest.mark.parametrize("config", RECIPE_CONFIGS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_every_recipe_config_builds(config):
    args = DistillTask.get_parser().parse_args(["--config", str(config), "--output_dir", "x"])
    model = DistillTask.build_student(args)  # the CNN teacher (student_cnn) is not at hand here
    depths = DistillTask.stacking_kwargs(args)["depths"]
    assert model.encoder.num_blocks == depths[-1] and model.depth == depths[0]
    assert set(model.plan.pairs) == set(depths)
    if len(depths) > 1:  # recipes ship the optimizer rule the bench measured best (README)
        assert args.optimizer_state_rule == "reset_all"


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


def test_student_cnn_teacher_init_copies_the_cnn_exactly(tmp_path):
    spec = "random:hubert?layers=4&dim=32&conv=16&seed=3"
    conf = write_config(tmp_path / "c.yaml")
    args = DistillTask.get_parser().parse_args(
        ["--config", str(conf), "--output_dir", "x", "--student_cnn", "teacher_init", "--teacher", spec])
    model = DistillTask.build_model(args).eval()
    assert all(p.requires_grad for p in model.frontend.parameters())  # a start, not frozen
    from espnet2_stacking.upstreams import load_upstream

    teacher = load_upstream(spec)
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model.frontend(wav, torch.tensor([8000]))
        theirs, _ = teacher._module.feature_extractor(wav, torch.tensor([8000]))
    assert torch.allclose(ours, theirs, atol=1e-5)
    args.teacher = "random:hubert?layers=4&dim=32&conv=24"
    with pytest.raises(ValueError, match="does not fit the student's frontend"):
        DistillTask.build_model(args)
    args.teacher = None  # no online teacher and no dump: whose CNN?
    with pytest.raises(StackingConfigError, match="give the online --teacher SPEC, or --train_dump_dir"):
        DistillTask.resolve_args(args)


def _poison(tiny_corpus, tmp_path, every: int):
    """A copy of the train dump where every ``every``-th utterance's targets are NaN."""
    import shutil

    import numpy as np

    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "data", root / "data")
    shutil.copytree(tiny_corpus / "dump", root / "dump")
    from espnet2_stacking.data import frame_shards

    dump = root / "dump/train"
    for t in (2, 4):
        lines = (dump / f"layer_{t}.scp").read_text().splitlines()
        rows = []
        for i, line in enumerate(lines):
            uttid, value = line.split()
            path, start, stop = value.replace(str(tiny_corpus), str(root)).rsplit(":", 2)
            if i % every == 0:  # the utterance's rows of its shard, in place
                array = np.load(path)
                array[int(start):int(stop)] = np.nan
                np.save(path, array)
            rows.append(f"{uttid} {path}:{start}:{stop}")
        (dump / f"layer_{t}.scp").write_text("\n".join(rows) + "\n")
        for record in (dump / "shards").glob("*.json"):  # the poison is meant: record it
            rec = json.loads(record.read_text())
            shard = dump / rec["files"][f"layer_{t}"]["file"]
            rec["files"][f"layer_{t}"]["sampled_digest"] = frame_shards.sampled_digest(shard)
            record.write_text(json.dumps(rec))
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





def cnn_train_args(tiny_corpus, cnn_dump, config, out, *extra):
    """distill_train's arguments on cnn_dump (targets 2 and 4 and the CNN output), resolved."""
    args = train_args(tiny_corpus, config, out, dumped=False) + [
        "--train_dump_dir", str(cnn_dump / "train"), "--valid_dump_dir", str(cnn_dump / "dev"), *extra]
    parsed = DistillTask.get_parser().parse_args(args)
    DistillTask.resolve_args(parsed)
    return parsed


def data_names(args, split="train"):
    return {entry[1]: entry[0] for entry in getattr(args, f"{split}_data_path_and_name_and_type")}


def test_dump_dirs_expand_into_the_lists_their_meta_names(tiny_corpus, cnn_dump, tmp_path):
    """--train_dump_dir adds the plan's target lists (and, for a frozen teacher CNN, cnn.scp);
    the dump's meta.json fixes the teacher's shape; a layer the dump lacks is named."""
    conf = write_config(tmp_path / "c.yaml", teacher_num_layers=12, teacher_hidden_size=768)
    trained = cnn_train_args(tiny_corpus, cnn_dump, conf, tmp_path / "x")
    assert data_names(trained) == {"speech": f"{tiny_corpus}/data/train/wav.scp",
                                   "target_2": f"{cnn_dump}/train/layer_2.scp", "target_4": f"{cnn_dump}/train/layer_4.scp"}
    assert data_names(trained, "valid")["target_4"] == f"{cnn_dump}/dev/layer_4.scp"
    assert (trained.teacher_num_layers, trained.teacher_hidden_size) == (4, 32)  # from meta.json
    DistillTask.resolve_args(trained)  # idempotent: nothing added twice
    assert len(trained.train_data_path_and_name_and_type) == 3
    frozen = cnn_train_args(tiny_corpus, cnn_dump, conf, tmp_path / "x", "--student_cnn", "teacher_frozen")
    assert data_names(frozen)["cnn_feats"] == f"{cnn_dump}/train/cnn.scp"
    far = write_config(tmp_path / "far.yaml", stacking={"targets": [2, 3]})
    with pytest.raises(StackingConfigError, match=r"dump/?.*train: layer_3.scp missing \(the dump holds layers \[2, 4\]"):
        cnn_train_args(tiny_corpus, cnn_dump, far, tmp_path / "x")
    with pytest.raises(StackingConfigError, match="no meta.json"):
        cnn_train_args(tiny_corpus, tiny_corpus / "data", conf, tmp_path / "x")


def test_dumped_cnn_features_stand_in_for_the_frozen_teacher_cnn(tmp_path):
    """With student_cnn teacher_frozen the frontend is the teacher's CNN, frozen, and the loss
    from the teacher's CNN output equals the loss from running that frontend."""
    from espnet2_stacking.upstreams import load_upstream

    argv = ["--config", str(write_config(tmp_path / "c.yaml", student_cnn="teacher_frozen")), "--output_dir", "x"]
    model = DistillTask.build_student(DistillTask.get_parser().parse_args(argv), CNN_TEACHER).eval()
    assert not any(p.requires_grad for p in model.frontend.parameters())
    teacher = load_upstream(CNN_TEACHER)
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
    """Online, student_cnn teacher_frozen takes the CNN output from the teacher's pass: the
    same loss as running the student's frozen copy of that CNN, which is not run."""
    argv = ["--config", str(write_config(tmp_path / "c.yaml")), "--output_dir", "x", "--teacher", CNN_TEACHER]
    parser = DistillTask.get_parser()
    computes = DistillTask.build_model(parser.parse_args(argv + ["--student_cnn", "teacher_init"])).eval()
    computes.frontend.requires_grad_(False)
    args = parser.parse_args(argv + ["--student_cnn", "teacher_frozen"])
    DistillTask.resolve_args(args)  # no dump needed online
    DistillTask.build_collate_fn(args, train=True)
    reuses = DistillTask.build_model(args).eval()
    assert not any(p.requires_grad for p in reuses.frontend.parameters())
    reuses.load_state_dict(computes.state_dict())
    calls = []
    reuses.frontend.register_forward_hook(lambda *_: calls.append(1))
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 8000])  # unpadded: the group norm's statistics agree
    with torch.no_grad():
        a, b = computes(wav, lengths)[0], reuses(wav, lengths)[0]
    assert torch.allclose(a, b, rtol=1e-5), (a, b)
    assert calls == []


def test_a_dumps_relative_teacher_path_is_refused_with_where_it_came_from(tmp_path, monkeypatch):
    """A recipe's dump names its teacher relative to the recipe dir: from another dir the
    student's CNN has no source, and the error says which meta.json and why."""
    dump = tmp_path / "recipe" / "dump" / "train"
    dump.mkdir(parents=True)
    meta = {"teacher": "exp/teacher/model.pth", "layers": [3, 6], "hidden_size": 64, "num_layers": 6}
    (dump / "meta.json").write_text(json.dumps(meta))
    args = argparse.Namespace(student_cnn="teacher_frozen", teacher=None, train_dump_dir=str(dump),
                              valid_dump_dir=None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StackingConfigError, match=r"recipe/dump/train/meta.json names teacher 'exp/teacher/model.pth', a path relative"):
        DistillTask.cnn_teacher(args)
    (tmp_path / "recipe/exp/teacher").mkdir(parents=True)
    (tmp_path / "recipe/exp/teacher/model.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "recipe")  # where the dump was made: the path holds
    assert DistillTask.cnn_teacher(args) == "exp/teacher/model.pth"
    meta["teacher"] = "exp/hf_teacher"  # a Hugging Face dir is a path too
    (dump / "meta.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StackingConfigError, match=r"names teacher 'exp/hf_teacher', a path relative"):
        DistillTask.cnn_teacher(args)
    for spec in ("random:hubert?seed=3", "fbank?n_mels=40"):  # specs, not paths: passed on as they are
        meta["teacher"] = spec
        (dump / "meta.json").write_text(json.dumps(meta))
        assert DistillTask.cnn_teacher(args) == spec


def test_dumped_cnn_features_are_refused_where_they_cannot_be_the_student_cnn(tiny_corpus, cnn_dump, tmp_path):
    conf = write_config(tmp_path / "c.yaml")

    def args_of(*extra, config=conf):
        return cnn_train_args(tiny_corpus, cnn_dump, config, tmp_path / "x", *extra)

    explicit = ["--train_data_path_and_name_and_type", f"{cnn_dump}/train/cnn.scp,cnn_feats,npy"]
    with pytest.raises(StackingConfigError, match="given as 'cnn_feats' but student_cnn is trained"):
        args_of(*explicit)
    with pytest.raises(StackingConfigError, match="given as 'cnn_feats' but student_cnn is teacher_init"):
        args_of("--student_cnn", "teacher_init", *explicit)
    other = CNN_TEACHER.replace("seed=3", "seed=4")
    with pytest.raises(StackingConfigError, match=r"holds the states of random:.*seed=3.*the student's CNN is random:.*seed=4"):
        args_of("--student_cnn", "teacher_frozen", "--teacher", other)
    args = args_of("--student_cnn", "teacher_frozen")
    assert DistillTask.cnn_teacher(args) == CNN_TEACHER  # from the dump's meta.json
    # the tiny corpus's dump has no CNN output: nothing stands in, the frozen CNN runs
    no_cnn = train_args(tiny_corpus, conf, tmp_path / "y") + ["--student_cnn", "teacher_frozen"]
    parsed = DistillTask.get_parser().parse_args(no_cnn)
    DistillTask.resolve_args(parsed)
    assert "cnn_feats" not in data_names(parsed)
    wider = write_config(tmp_path / "wide.yaml", frontend_conf={
        "norm_mode": "group_norm", "conv_mode": "standard", "bias": False,
        "shapes": [[24, 10, 5]] + [[24, 3, 2]] * 4 + [[24, 2, 2]] * 2})
    with pytest.raises(ValueError, match=r"cnn/.*expected \(frames, 24\)"):
        DistillTask.check_inputs(args_of("--student_cnn", "teacher_frozen", config=wider))


def test_an_epoch_out_of_proportion_to_the_training_set_is_refused(tiny_corpus, tmp_path):
    """A config sized for 960 h on a 100 h set would go over the data ten times an epoch: refused
    with the size of one pass (12 utterances, batches of 4: one pass is 3 batches)."""
    def resolved(iters):
        conf = write_config(tmp_path / f"c{iters}.yaml", num_iters_per_epoch=iters)
        args = DistillTask.get_parser().parse_args(train_args(tiny_corpus, conf, tmp_path / "x"))
        DistillTask.resolve_args(args)
        return args

    assert resolved(6).num_iters_per_epoch == 6  # two passes: allowed
    with pytest.raises(StackingConfigError, match=r"num_iters_per_epoch=10 x batch_size=4 goes over the 12 "
                                                  r"utterances of .*utt2num_samples 3.3 times an epoch; one pass is 3"):
        resolved(10)
