import json
import socket
import types

import pytest
import torch
import torch.multiprocessing as mp
from conftest import write_config

from espnet2_stacking.tasks.distill import DistillTask
from espnet2_stacking.training.stacking_trainer import (
    StackingTrainer,
    check_plan_lineage,
    check_ranks_agree,
    read_stacking_log,
)


def _rank(rank, port, results):
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    for case in ("same", "one weight differs"):
        if case == "one weight differs" and rank == 1:
            with torch.no_grad():
                model.weight[0, 0] += 1e-6
        try:
            check_ranks_agree(model, "in the test")
            results[(rank, case)] = "agree"
        except RuntimeError as e:
            results[(rank, case)] = str(e)
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # spawns processes
def test_ranks_check_detects_a_one_weight_difference():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(port, results), nprocs=2, join=True)  # one spawn for both cases: 7 s each
    assert [results[(r, "same")] for r in (0, 1)] == ["agree", "agree"]
    assert all("different weights in the test" in results[(r, "one weight differs")] for r in (0, 1))


def _checkpoint(depth: int, num_updates: int):
    """What train_one_epoch sees of a loaded checkpoint: its depth and update count."""
    return types.SimpleNamespace(depth=depth, num_updates=torch.tensor(float(num_updates), dtype=torch.float64))


GROWTHS = [{"update": 4, "epoch": 2, "from": 1, "to": 2, "src": [0, 0], "stage_seconds": 1.0},
           {"update": 8, "epoch": 3, "from": 2, "to": 4, "src": [0, 0, 1, 1], "stage_seconds": 1.0}]


def _write_log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_resume_drops_growths_the_checkpoint_does_not_hold(tmp_path):
    log = tmp_path / "stacking.jsonl"
    _write_log(log, GROWTHS + [{"summary": {}}])
    StackingTrainer._keep_checkpoint_growths(log, _checkpoint(depth=2, num_updates=6))
    assert read_stacking_log(log) == GROWTHS[:1]


@pytest.mark.parametrize("depth,kept", [(1, 0), (2, 1), (4, 2)])
def test_resume_at_a_boundary_on_an_epoch_end_keeps_the_log_at_the_checkpoints_depth(tmp_path, depth, kept):
    """A growth due at update U, the last update of an epoch, happens (and is logged with update
    U) before the next epoch's first batch; the epoch's checkpoint holds U updates and the depth
    before it. Resumed from there the growth happens again: its record must not survive, or it
    is logged twice (summary depths [1, 2, 2, 4])."""
    log = tmp_path / "stacking.jsonl"
    _write_log(log, GROWTHS + [{"summary": {}}])
    updates = {1: 4, 2: 8, 4: 12}[depth]  # each checkpoint at the update of the next growth
    StackingTrainer._keep_checkpoint_growths(log, _checkpoint(depth=depth, num_updates=updates))
    assert read_stacking_log(log) == GROWTHS[:kept]


def _student(tmp_path, name, **stacking):
    argv = ["--config", str(write_config(tmp_path / f"{name}.yaml", stacking=stacking)), "--output_dir", "x"]
    return DistillTask.build_student(DistillTask.get_parser().parse_args(argv))


def _grow_to(model, depth: int) -> None:
    """Train nothing, only count updates and grow as the trainer does, up to ``depth``."""
    while model.depth < depth:
        model.num_updates.fill_(float(next(b for b in model.plan.boundaries if model.plan.depth_at(b) > model.depth)))
        model.grow_once()


@pytest.mark.parametrize("started,resumed,depth", [
    ({"depths": [2, 3], "anchor": "last"}, {"depths": [2, 3], "anchor": "first"}, 3),
    ({"depths": [2, 4]}, {"depths": [2, 4], "method": "gradual"}, 4),
    ({"depths": [2, 4]}, {"depths": [2, 4], "method": "stackbert"}, 4),
    ({"depths": [1, 2, 4]}, {"depths": [1, 3, 4]}, 2),
])
def test_a_checkpoint_grown_by_another_plan_is_refused_before_the_first_update(tmp_path, started, resumed, depth):
    model = _student(tmp_path, "started", **started)
    _grow_to(model, depth)
    check_plan_lineage(model)  # the plan it grew by
    model.plan = _student(tmp_path, "resumed", **resumed).plan  # resumed with another stacking_conf
    with pytest.raises(RuntimeError) as e:
        check_plan_lineage(model)
    message = str(e.value)
    assert "\n" not in message
    assert f"depth {depth}" in message and f"lineage {model.encoder.lineage}" in message
    assert "resumed with a different stacking_conf (method, anchor, depths)" in message


def test_a_checkpoint_deeper_than_the_plan_allows_at_its_update_count_is_refused(tmp_path):
    model = _student(tmp_path, "c", depths=[2, 4])
    _grow_to(model, 4)
    model.num_updates.fill_(float(model.plan.boundaries[0] - 1))  # e.g. a longer run: later boundaries
    with pytest.raises(RuntimeError, match=r"depth 4 .*reaches only depth 2 after 5 updates.*resumed with a different"):
        check_plan_lineage(model)


def test_a_checkpoint_with_a_growth_pending_is_accepted(tmp_path):
    """A checkpoint taken at a boundary that falls on an epoch end: due deeper, not yet grown."""
    model = _student(tmp_path, "c", depths=[1, 2, 4])
    check_plan_lineage(model)
    model.num_updates.fill_(float(model.plan.boundaries[1]))  # due depth 4, still at 1
    check_plan_lineage(model)
    _grow_to(model, 2)
    model.num_updates.fill_(float(model.plan.boundaries[1]))
    check_plan_lineage(model)
