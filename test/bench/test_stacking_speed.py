"""The bench's bookkeeping (the layer share fit, the per-epoch depths, each run's config and
command line) and its command lines and in-process model build against DistillTask."""

import argparse
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CNN_TEACHER, TEACHER, distill_config, write_config

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import stacking_speed  # noqa: E402
import step_profile  # noqa: E402

from espnet2_stacking.stacking import StackingConfigError, plan_stacking  # noqa: E402
from espnet2_stacking.tasks.distill_config import STACKING_DEFAULTS  # noqa: E402


def test_epoch_depths_weigh_a_growth_inside_an_epoch():
    plan = plan_stacking("interleaved", [2, 4, 6], schedule="prop:1", total_updates=12,
                         mode="l2l", targets=[3, 6], teacher_layers=6)
    assert list(plan.stage_lengths) == [2, 4, 6]
    # 3 epochs of 4 updates: [2, 2, 4, 4] [4, 4, 6, 6] [6, 6, 6, 6]
    assert stacking_speed.epoch_depths(plan, 3) == [3.0, 5.0, 6.0]


def test_layer_share_recovers_f_whatever_each_epoch_costs():
    f, full = 0.4, 6
    reference = [10.0, 14.0, 9.0, 20.0]  # epochs of different cost: different batches

    def run(depths):
        return {"epoch_depths": depths,
                "epoch_seconds": [ref * ((1 - f) + f * d / full) for ref, d in zip(reference, depths)]}

    runs = [run([2, 2, 4, 6]), run([2, 4, 6, 6]), run([3, 5, 6, 6])]
    assert stacking_speed.layer_share(runs, reference, full) == pytest.approx(f)
    # no epoch below full depth: nothing to fit
    assert math.isnan(stacking_speed.layer_share([run([6, 6, 6, 6])], reference, full))


def test_run_config_sets_each_methods_stacking_conf_over_the_base():
    base = {"teacher_num_layers": 6, "stacking_conf": {"depths": [2, 4, 6], "targets": [3, 6],
                                                       "anchor": "first"}}
    plain = stacking_speed.run_config(base, "none", 300, 0, 6)
    # every key of plan_stacking's, resolved; `none` at the base's last depth only
    assert plain["stacking_conf"] == {**STACKING_DEFAULTS, "method": "none", "depths": [6],
                                      "targets": [3, 6], "mode": "l2l_proportional",
                                      "anchor": "first"}
    assert plain["num_iters_per_epoch"] == 50 and plain["max_epoch"] == 6 and plain["seed"] == 0
    assert "student_cnn" not in plain and "freeze_param" not in plain
    stacked = stacking_speed.run_config(base, "interleaved_prop1", 300, 0, 6)
    assert stacked["stacking_conf"] == {**STACKING_DEFAULTS, "method": "interleaved",
                                        "depths": [2, 4, 6], "targets": [3, 6], "mode": "l2l",
                                        "schedule": "prop:1", "anchor": "first"}
    assert {k: v for k, v in stacked.items() if k != "stacking_conf"} == {
        k: v for k, v in plain.items() if k != "stacking_conf"}
    for method, spec in stacking_speed.METHODS.items():
        conf = stacking_speed.run_config(base, method, 300, 0, 6)
        depths = [6] if method == "none" else [2, 4, 6]
        assert conf["stacking_conf"] == {**STACKING_DEFAULTS, "targets": [3, 6], "anchor": "first",
                                         **spec, "depths": depths}
        plan = stacking_speed.run_plan(conf, 300)  # what the bench's bookkeeping plans
        assert list(plan.depths) == depths and sum(plan.stage_lengths) == 300
    # the base is not changed
    assert base["stacking_conf"] == {"depths": [2, 4, 6], "targets": [3, 6], "anchor": "first"}
    with pytest.raises(SystemExit, match="multiple of --curve_points"):
        stacking_speed.run_config(base, "none", 301, 0, 6)
    # a base config with the options of earlier versions fails naming what replaced them
    with pytest.raises(StackingConfigError, match="stacking_depths.*stacking_conf.depths"):
        stacking_speed.run_config({"stacking_depths": [2, 4, 6]}, "none", 300, 0, 6)
    with pytest.raises(StackingConfigError, match="unknown key"):
        stacking_speed.run_config({"stacking_conf": {"stacking_depths": [6]}}, "none", 300, 0, 6)


def test_distill_args_pass_dump_dirs_or_the_online_teacher_and_student_cnn():
    splits = {"train": (Path("d/train"), Path("x/train")), "valid": (Path("d/dev"), Path("x/dev"))}
    data = ["--train_data_path_and_name_and_type", "d/train/wav.scp,speech,sound",
            "--train_shape_file", "d/train/utt2num_samples"]
    valid = ["--valid_data_path_and_name_and_type", "d/dev/wav.scp,speech,sound",
             "--valid_shape_file", "d/dev/utt2num_samples"]
    dumped = stacking_speed.distill_args(splits, "dump", "t.pth", frozen_cnn=False)
    assert dumped == [*data, "--train_dump_dir", "x/train", *valid, "--valid_dump_dir", "x/dev"]
    online = stacking_speed.distill_args(splits, "online", "t.pth", frozen_cnn=False)
    assert online == [*data, *valid, "--teacher", "t.pth"]
    # the frozen teacher CNN is one option; the task finds its output (dump or teacher's pass)
    assert stacking_speed.distill_args(splits, "dump", "t.pth", True) == dumped + [
        "--student_cnn", "teacher_frozen"]
    assert stacking_speed.distill_args(splits, "online", "t.pth", True) == online + [
        "--student_cnn", "teacher_frozen"]
    with pytest.raises(SystemExit, match="dump or online"):
        stacking_speed.distill_args(splits, "dumped", "t.pth", False)



def test_check_dumps_names_a_teacher_mismatch_and_warns_of_a_dump_without_cnn(tiny_corpus, capsys):
    dumps = [tiny_corpus / "dump" / "train", tiny_corpus / "dump" / "dev"]
    stacking_speed.check_dumps(dumps, TEACHER, frozen_cnn=False)
    stacking_speed.check_dumps(dumps, None, frozen_cnn=False)
    assert "WARNING" not in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"holds the states of random:hubert.*not of --teacher other"):
        stacking_speed.check_dumps(dumps, "other", frozen_cnn=False)
    stacking_speed.check_dumps(dumps, TEACHER, frozen_cnn=True)
    assert "holds no CNN output" in capsys.readouterr().err
    with pytest.raises(StackingConfigError, match="no meta.json"):
        stacking_speed.check_dumps([tiny_corpus / "data" / "train"], None, frozen_cnn=False)


def profile_args(tmp_path, config: Path, data: Path, dump: Path, teacher: str, frozen: bool):
    return step_profile.get_parser().parse_args([
        "--config", str(config), "--data_dir", str(data), "--dump_dir", str(dump),
        "--teacher", teacher, "--frozen_teacher_cnn", str(frozen).lower(), "--steps", "1",
        "--warmup", "0", "--out_dir", str(tmp_path)])


def test_step_profile_builds_the_tasks_model_from_the_bench_options(tiny_corpus, tmp_path):
    config = write_config(tmp_path / "c.yaml")
    args = profile_args(tmp_path, config, tiny_corpus / "data" / "train",
                        tiny_corpus / "dump" / "train", TEACHER, frozen=False)
    task_args, model, _, _, _ = step_profile.build(args, "dump")
    # the dump dir expanded into the config's layer lists (resolve_args, as ESPnet's main)
    dump = tiny_corpus / "dump" / "train"
    assert task_args.train_data_path_and_name_and_type[1:] == [
        (f"{dump}/layer_2.scp", "target_2", "cropped_npy"), (f"{dump}/layer_4.scp", "target_4", "cropped_npy")]
    assert model.teacher is None and all(p.requires_grad for p in model.frontend.parameters())
    task_args, model, _, _, _ = step_profile.build(args, "online")
    assert len(task_args.train_data_path_and_name_and_type) == 1 and model.teacher is not None
    # one step at each depth, both modes: the student's own CNN runs in both
    for mode in ("dump", "online"):
        rows = step_profile.profile_mode(args, mode)
        assert list(rows) == [1, 2, 4]
        assert all(row["cnn"] > 0 and row["layers"] > 0 for row in rows.values())
        assert all((row["teacher"] > 0) == (mode == "online") for row in rows.values())


def test_step_profile_frozen_teacher_cnn_is_never_run_for_the_student(tiny_corpus, cnn_dump, tmp_path):
    config = tmp_path / "c.yaml"  # a config as stacking_speed.py writes it: stacking_conf resolved
    config.write_text(yaml.safe_dump(stacking_speed.run_config(
        distill_config(stacking={"depths": [2, 4]}), "interleaved_eql", 12, 0, 4)))  # l2l: 2 targets
    args = profile_args(tmp_path, config, tiny_corpus / "data" / "train", cnn_dump / "train",
                        CNN_TEACHER, frozen=True)
    task_args, model, _, _, _ = step_profile.build(args, "dump")
    assert task_args.train_data_path_and_name_and_type[-1] == (
        f"{cnn_dump}/train/cnn.scp", "cnn_feats", "cropped_npy")
    assert not any(p.requires_grad for p in model.frontend.parameters())
    for mode in ("dump", "online"):  # read from the dump / taken from the teacher's pass
        rows = step_profile.profile_mode(args, mode)
        assert list(rows) == [2, 4]
        assert all(row["cnn"] == 0 and row["layers"] > 0 for row in rows.values())
        assert all((row["teacher"] > 0) == (mode == "online") for row in rows.values())


@pytest.mark.slow
def test_train_runs_distill_train_with_the_bench_command_line(tiny_corpus, cnn_dump, tmp_path):
    """stacking_speed.train end to end: a dumped-target run with the frozen teacher CNN read
    from the dump, and an online one taking it from the teacher's pass, each 8 updates in 2
    epochs."""
    for mode in ("dump", "online"):
        args = argparse.Namespace(data_dir=tiny_corpus / "data", dump_dir=cnn_dump, ngpu=0,
                                  teacher=CNN_TEACHER, frozen_teacher_cnn=True)
        conf = stacking_speed.run_config(distill_config(stacking={"depths": [2, 4]}, batch_size=2),
                                         "interleaved_eql", 8, 0, 2)
        r = train_or_report(conf, args, mode, tmp_path / mode)
        assert r["updates"] == 8 and r["stage_depths"] == [2, 4]
        assert len(r["curve"]) == 2 and len(r["epoch_seconds"]) == 2
        saved = yaml.safe_load((tmp_path / mode / "exp" / "config.yaml").read_text())
        assert saved["student_cnn"] == "teacher_frozen"
        assert saved["stacking_conf"] == conf["stacking_conf"]
        if mode == "dump":
            assert saved["train_dump_dir"] == str(cnn_dump / "train") and saved["teacher"] is None
            assert [e[1] for e in saved["train_data_path_and_name_and_type"]] == [
                "speech", "target_2", "target_4", "cnn_feats"]
        else:
            assert saved["teacher"] == CNN_TEACHER and saved["train_dump_dir"] is None
        # it grew where the bench's bookkeeping (run_plan) says it did
        plan = stacking_speed.run_plan(conf, 8)
        log = [json.loads(x) for x in (tmp_path / mode / "exp" / "stacking.jsonl").read_text().splitlines()]
        assert [(g["update"], g["to"]) for g in log[:-1]] == [
            (sum(plan.stage_lengths[:i + 1]), d) for i, d in enumerate(plan.depths[1:])]


def train_or_report(conf, args, mode, out):
    try:
        return stacking_speed.train(conf, args, mode, out)
    except RuntimeError as e:  # the run's own stderr tail, not only "training failed"
        pytest.fail(str(e))
