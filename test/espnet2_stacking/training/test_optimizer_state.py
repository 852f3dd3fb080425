import pytest
import torch

from espnet2_stacking.student.stacking_encoder import StackingTransformerEncoder
from espnet2_stacking.training.optimizer_state import transfer_optimizer_state

DIM = 16
INTERLEAVED_3_6 = [0, 0, 1, 1, 2, 2]
GRADUAL_3_5 = [0, 1, 2, 1, 2]
OPTIMIZERS = [
    pytest.param(torch.optim.AdamW, dict(foreach=False), id="adamw-single-tensor"),
    pytest.param(torch.optim.AdamW, dict(foreach=True), id="adamw-foreach"),
    pytest.param(torch.optim.AdamW, dict(fused=True), id="adamw-fused"),
    pytest.param(torch.optim.Adam, dict(foreach=False, amsgrad=True), id="adam-amsgrad"),
    pytest.param(torch.optim.Adam, dict(foreach=True), id="adam-foreach"),
]


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 9, DIM, generator=g), torch.tensor([9, 6])


def step(enc, opt):
    xs, lens = batch()
    enc(xs, lens)[0].pow(2).mean().backward()
    opt.step()
    opt.zero_grad()


def trained(optim_cls=torch.optim.AdamW, steps=2, **kw):
    """A depth-3 encoder after a few AdamW steps, so every active slot has distinct state."""
    torch.manual_seed(0)
    enc = StackingTransformerEncoder(DIM, output_size=DIM, attention_heads=2, linear_units=32,
                                     num_blocks=6, initial_depth=3, dropout_rate=0.0,
                                     positional_dropout_rate=0.0, attention_dropout_rate=0.0)
    opt = optim_cls(enc.parameters(), lr=1e-3, weight_decay=1e-4, **kw)
    for _ in range(steps):
        step(enc, opt)
    return enc, opt


def states(opt, enc, slot):
    return [opt.state.get(p) for p in enc.encoders[slot].parameters()]


def snapshot(opt, enc, depth):
    return [[{k: v.clone() for k, v in s.items()} for s in states(opt, enc, j)]
            for j in range(depth)]


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optim_cls,kw", OPTIMIZERS)
def test_copy_gives_each_slot_its_sources_state(optim_cls, kw):
    enc, opt = trained(optim_cls, **kw)
    saved = snapshot(opt, enc, 3)
    assert {"step", "exp_avg", "exp_avg_sq"} <= set(saved[0][0])
    assert not torch.equal(saved[0][0]["exp_avg"], saved[1][0]["exp_avg"])  # distinct sources
    enc.grow(INTERLEAVED_3_6)
    transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "copy")
    for i, j in enumerate(INTERLEAVED_3_6):
        got = states(opt, enc, i)
        assert all(same(g, w) for g, w in zip(got, saved[j])), (i, j)
    # copies, not shared storage: the next step updates each slot's moments on its own
    p0, p1 = next(enc.encoders[0].parameters()), next(enc.encoders[1].parameters())
    assert opt.state[p0]["exp_avg"].data_ptr() != opt.state[p1]["exp_avg"].data_ptr()
    before = [p.clone() for p in enc.encoders[5].parameters()]
    step(enc, opt)
    assert float(opt.state[p1]["step"]) == 3.0
    assert any(not torch.equal(a, p) for a, p in zip(before, enc.encoders[5].parameters()))


def test_reset_moves_originals_and_frees_copies():
    enc, opt = trained()
    saved = snapshot(opt, enc, 3)
    enc.grow(GRADUAL_3_5)  # slots 0-2 keep their layers; 3, 4 copy layers 1, 2
    transfer_optimizer_state(opt, enc, GRADUAL_3_5, "reset")
    for i in range(3):
        assert all(same(g, w) for g, w in zip(states(opt, enc, i), saved[i])), i
    for i in (3, 4):
        assert all(s is None for s in states(opt, enc, i)), i

    enc, opt = trained()
    saved = snapshot(opt, enc, 3)
    enc.grow(INTERLEAVED_3_6)  # originals land in slots 0, 2, 4; copies in 1, 3, 5
    transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "reset")
    for i, j in enumerate(INTERLEAVED_3_6):
        got = states(opt, enc, i)
        if i % 2 == 0:
            assert all(same(g, w) for g, w in zip(got, saved[j])), i
        else:
            assert all(s is None for s in got), i
    step(enc, opt)  # copies start at step 1 with fresh moments, originals go on
    assert float(opt.state[next(enc.encoders[1].parameters())]["step"]) == 1.0
    assert float(opt.state[next(enc.encoders[2].parameters())]["step"]) == 3.0


def test_reset_all_empties_the_state_and_keeps_the_groups():
    enc, opt = trained()
    enc.grow(INTERLEAVED_3_6)
    transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "reset_all")
    assert len(opt.state) == 0
    assert opt.param_groups[0]["lr"] == 1e-3
    assert len(opt.param_groups[0]["params"]) == len(list(enc.parameters()))
    step(enc, opt)
    assert float(opt.state[next(enc.encoders[0].parameters())]["step"]) == 1.0


@pytest.mark.parametrize("rule", ["copy", "reset"])
def test_transferred_state_survives_a_checkpoint(rule):
    enc, opt = trained()
    enc.grow(INTERLEAVED_3_6)
    transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, rule)
    resumed = torch.optim.AdamW(enc.parameters(), lr=1e-3, weight_decay=1e-4)
    resumed.load_state_dict(opt.state_dict())
    for i in range(6):
        for a, b in zip(states(opt, enc, i), states(resumed, enc, i)):
            assert (a is None and b is None) or same(a, b)
    step(enc, resumed)


def test_growth_at_update_zero_has_no_state_to_move():
    enc, opt = trained(steps=0)
    enc.grow(INTERLEAVED_3_6)
    transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "copy")
    assert len(opt.state) == 0
    step(enc, opt)


def test_bad_calls_are_refused():
    enc, opt = trained()
    with pytest.raises(ValueError, match="right after encoder.grow"):
        transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "copy")  # grow not called yet
    enc.grow(INTERLEAVED_3_6)
    with pytest.raises(ValueError, match="rule"):
        transfer_optimizer_state(opt, enc, INTERLEAVED_3_6, "keep")
