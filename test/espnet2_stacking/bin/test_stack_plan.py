import json
import subprocess
import sys

import pytest

from espnet2_stacking.bin.stack_plan import get_parser, main, plan_kwargs

CMD = [sys.executable, "-m", "espnet2_stacking.bin.stack_plan"]


def run(*args):
    return subprocess.run(CMD + list(args), capture_output=True, text=True)


def test_the_method_example():
    res = run("--method", "interleaved", "--depths", "3,6,9,12", "--targets", "4,8,12",
              "--mode", "l2l", "--schedule", "prop:1", "--total_updates", "1000")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"growths", "pairs", "boundaries"}
    assert out["growths"] == [
        {"from": 3, "to": 6, "src": [0, 0, 1, 1, 2, 2], "lineage": [0, 0, 1, 1, 2, 2]},
        {"from": 6, "to": 9, "src": [0, 1, 1, 2, 3, 3, 4, 5, 5],
         "lineage": [0, 0, 0, 1, 1, 1, 2, 2, 2]},
        {"from": 9, "to": 12, "src": [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8],
         "lineage": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]},
    ]
    assert out["pairs"] == {
        "3": [[1, 4], [2, 8], [3, 12]], "6": [[2, 4], [4, 8], [6, 12]],
        "9": [[3, 4], [6, 8], [9, 12]], "12": [[4, 4], [8, 8], [12, 12]],
    }
    assert out["boundaries"] == [100, 300, 600]


def test_boundaries_null_without_total():
    out = json.loads(run("--depths", "3,6").stdout)
    assert out["boundaries"] is None


def test_defaults_and_in_process_main(capsys):
    kwargs = plan_kwargs(get_parser().parse_args(["--depths", "3,6"]))
    assert (kwargs["method"], kwargs["anchor"], kwargs["mode"], kwargs["teacher_layers"], kwargs["schedule"]) == (
        "interleaved", "last", "l2l", 12, "eql")
    main(["--method", "midas", "--depths", "3,6,9,12", "--mode", "pred", "--targets", "4,8,12",
          "--total_updates", "1000"])
    out = json.loads(capsys.readouterr().out)
    assert [g["src"] for g in out["growths"]] == [
        [0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8],
    ]
    assert out["pairs"]["9"] == [[9, 4], [9, 8], [9, 12]]
    assert out["boundaries"] == [250, 500, 750]


def test_none_has_no_growths(capsys):
    main(["--method", "none", "--depths", "12", "--mode", "l2l_proportional",
          "--targets", "4,8,12", "--total_updates", "10"])
    out = json.loads(capsys.readouterr().out)
    assert out == {"growths": [], "pairs": {"12": [[4, 4], [8, 8], [12, 12]]}, "boundaries": []}


@pytest.mark.parametrize(
    "args,match",
    [
        (["--depths", "6,3"], "strictly increasing"),
        (["--depths", "3,6", "--targets", "4,8,16"], "not a hidden state"),
        (["--method", "gradual", "--depths", "3,6", "--mode", "l2l"], "use --mode pred"),
        (["--depths", "3,6", "--targets", "8,4,12"], "strictly increasing"),
        (["--depths", "3,6", "--targets", "4,12"], "give 3 targets"),
        (["--depths", "3,6", "--schedule", "0.2,0.2"], "sum to"),
        (["--depths", "3,6", "--schedule", "fast"], "not eql"),
        (["--depths", "3,6", "--schedule", "prop:x"], "needs a number"),
        (["--depths", "3,6,9,12", "--total_updates", "3"], "too few"),
        (["--depths", "3,x"], "comma-separated integers"),
        (["--depths", ""], "comma-separated integers"),
        (["--method", "nope", "--depths", "3,6"], "invalid choice"),
        (["--method", "none", "--depths", "3,6"], "one depth"),
        (["--method", "midas", "--depths", "3", "--mode", "pred", "--block_size", "0"],
         "block size"),
        (["--depths", "5,10"], "--targets"),
        (["--method", "interleaved"], "give --depths"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, match):
    res = run(*args)
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], res.stderr


def test_config_gives_the_plan_of_the_configured_run(tmp_path, capsys):
    """--config plans exactly what distill_train would: its stacking_conf, teacher depth and run
    length (max_epoch x (num_iters_per_epoch // accum_grad)); options given beside it win."""
    from conftest import write_config

    from espnet2_stacking.tasks.distill import DistillTask

    config = write_config(tmp_path / "c.yaml", stacking={"method": "interleaved", "depths": [2, 4, 6],
                                                         "targets": [3, 6], "mode": "l2l"},
                          teacher_num_layers=6, max_epoch=5, num_iters_per_epoch=9, accum_grad=2)
    main(["--config", str(config)])
    out = json.loads(capsys.readouterr().out)
    args = DistillTask.get_parser().parse_args(["--config", str(config), "--output_dir", "x"])
    plan = DistillTask.build_plan(args)
    assert plan.total_updates == 20  # 5 epochs of 9 // 2 updates
    assert out["boundaries"] == list(plan.boundaries) == [7, 13]
    assert [g["src"] for g in out["growths"]] == [list(g.src) for g in plan.growths]
    assert out["pairs"] == {str(d): [list(p) for p in pairs] for d, pairs in plan.pairs.items()}
    main(["--config", str(config), "--schedule", "prop:1", "--total_updates", "600"])
    assert json.loads(capsys.readouterr().out)["boundaries"] == [100, 300]
    old = tmp_path / "old.yaml"
    old.write_text("stacking_depths: [2, 4]\n")
    res = run("--config", str(old))
    assert res.returncode == 2 and "replaced by stacking_conf.depths" in res.stderr
