import pytest
import torch

from espnet2_stacking.training.warmup_linear_decay_lr import WarmupLinearDecayLR


def _lrs(total, **kw):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    sched = WarmupLinearDecayLR(opt, total_steps=total, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])  # the lr this update runs at
        opt.step()
        sched.step()
    return out, sched, opt


def test_warmup_then_linear_decay_to_zero():
    lrs, _, _ = _lrs(100, warmup_ratio=0.1)
    assert lrs[0] == pytest.approx(5e-5)      # 1/10 of the way up
    assert lrs[9] == pytest.approx(5e-4)      # peak at the end of warm-up
    assert lrs[54] == pytest.approx(5e-4 * 46 / 90)
    assert lrs[-1] == pytest.approx(5e-4 / 90)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_state_dict_round_trip_continues_the_same_schedule():
    lrs, sched, opt = _lrs(50, warmup_ratio=0.2)
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    sched2 = WarmupLinearDecayLR(opt2, total_steps=100, warmup_ratio=0.2)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.total_steps == 50 and sched2.last_epoch == sched.last_epoch


def test_needs_a_length():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupLinearDecayLR(opt)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupLinearDecayLR(opt, total_steps=10, warmup_steps=10)
