"""A cast model (ESPnet's --train_dtype, .half(), .to(bfloat16)) keeps counting and growing."""

import pytest
import torch
from conftest import write_config

from espnet2_stacking.student.espnet_model import PROGRESS_BUFFERS
from espnet2_stacking.tasks.distill import DistillTask

LOW = [torch.bfloat16, torch.float16]


def _model(tmp_path, total_updates=4000):
    # depths 1 -> 2 -> 4, boundaries well past 256 (bf16) and 2048 (fp16)
    cfg = write_config(tmp_path / "c.yaml")
    args = DistillTask.get_parser().parse_args(
        ["--config", str(cfg), "--output_dir", str(tmp_path / "x"),
         "--total_updates", str(total_updates)])
    return DistillTask.build_student(args)


def _progress(model):
    return {name: getattr(model, name) for name in PROGRESS_BUFFERS}


@pytest.mark.parametrize("dtype", LOW)
def test_cast_keeps_progress_float64_and_counting(tmp_path, dtype):
    model = _model(tmp_path)
    plan = model.plan
    assert plan.boundaries[-1] > 2048  # the counts that would stall in fp16 / bf16
    model.num_updates.fill_(12345.0)
    model.train_seconds.fill_(1.0 + 2.0 ** -40)  # not representable in fp32, let alone fp16
    model = model.to(dtype)
    assert model.heads[str(plan.teacher_states[0])].weight.dtype == dtype  # the rest is cast
    assert {n: b.dtype for n, b in _progress(model).items()} == dict.fromkeys(PROGRESS_BUFFERS, torch.float64)
    # the values survive the cast exactly (taken before it, not rounded through it)
    assert model.num_updates.item() == 12345.0
    assert model.train_seconds.item() == 1.0 + 2.0 ** -40
    # count from zero past the boundaries: the plan's final depth is reached
    model.num_updates.zero_()
    for _ in range(3000):
        model.count_update()
    assert model.num_updates.item() == 3000
    assert model.due_depth() == plan.depths[-1]
    # the cast model still grows, and its encoder's growth state stays exact
    while model.depth < model.due_depth():
        model.grow_once()
    assert model.depth == plan.depths[-1] == model.encoder.depth
    assert model.encoder.lineage == list(plan.growths[-1].lineage)


@pytest.mark.parametrize("dtype", LOW)
def test_state_dict_round_trip_keeps_float64(tmp_path, dtype):
    model = _model(tmp_path).to(dtype)
    for _ in range(2500):
        model.count_update()
    model.skipped_updates.fill_(3.0)
    state = model.state_dict()
    assert all(state[n].dtype == torch.float64 for n in PROGRESS_BUFFERS)
    other = _model(tmp_path).to(dtype)
    other.load_state_dict(state)
    assert {n: (b.dtype, b.item()) for n, b in _progress(other).items()} == {
        "num_updates": (torch.float64, 2500.0),
        "train_seconds": (torch.float64, model.train_seconds.item()),
        "skipped_updates": (torch.float64, 3.0),
    }
    # and a cast back to float32 (or a move) keeps them float64 too
    assert all(b.dtype == torch.float64 for b in _progress(other.float().cpu()).values())


@pytest.mark.parametrize("dtype", LOW)
def test_encoder_growth_state_survives_cast(tmp_path, dtype):
    model = _model(tmp_path)
    model.grow_once()  # 1 -> 2
    depth, lineage = model.encoder.depth, model.encoder.lineage
    model = model.to(dtype)
    assert model.encoder.active_depth.dtype == dtype  # cast, but small integers are exact
    assert (model.encoder.depth, model.encoder.lineage) == (depth, lineage)
    assert int(model.encoder.active_depth.item()) == depth
    # a checkpoint of the cast model restores the same depth and lineage
    fresh = _model(tmp_path).to(dtype)
    fresh.load_state_dict(model.state_dict())
    assert (fresh.encoder.depth, fresh.encoder.lineage) == (depth, lineage)
    # growing the cast model writes its lineage exactly
    model.grow_once()  # 2 -> 4
    assert model.encoder.lineage == list(model.plan.growths[-1].lineage)
    assert model.encoder.depth == int(model.encoder.active_depth.item()) == model.plan.depths[-1]
