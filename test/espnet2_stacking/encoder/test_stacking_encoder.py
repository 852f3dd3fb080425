import pytest
import torch

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2_stacking.encoder.optimizer_state import transfer_optimizer_state
from espnet2_stacking.encoder.stacking_encoder import StackingTransformerEncoder

CONF = dict(output_size=16, attention_heads=2, linear_units=32, dropout_rate=0.0,
            positional_dropout_rate=0.0, attention_dropout_rate=0.0)


def make(depth=3, num_blocks=6, seed=0, **kw):
    torch.manual_seed(seed)
    conf = {**CONF, **kw}
    enc = StackingTransformerEncoder(16, num_blocks=num_blocks, initial_depth=depth, **conf)
    return enc.eval()


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 9, 16, generator=g), torch.tensor([9, 6])


def test_runs_only_the_active_prefix_and_returns_every_state():
    enc = make()
    xs, lens = batch()
    hs, olens = enc.forward_hidden_states(xs, lens)
    assert len(hs) == 4 and olens.tolist() == [9, 6]
    hs[-1][0].sum().backward()
    for i, layer in enumerate(enc.encoders):
        grads = [p.grad for p in layer.parameters()]
        if i < 3:
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads), f"inactive slot {i} got a gradient"


@pytest.mark.parametrize("src", [[0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2]])
def test_grow_copies_bit_exact_and_keeps_parameters(src):
    enc = make()
    before = {j: {k: v.clone() for k, v in enc.encoders[j].state_dict().items()} for j in range(3)}
    ids = [id(p) for p in enc.parameters()]
    enc.grow(src)
    assert [id(p) for p in enc.parameters()] == ids  # nothing added or replaced
    assert enc.depth == len(src) and enc.lineage == src
    for i, j in enumerate(src):
        for k, v in enc.encoders[i].state_dict().items():
            assert torch.equal(v, before[j][k]), (i, j, k)


def test_grown_encoder_equals_a_plain_transformer_with_duplicated_weights():
    """Independent check: ESPnet's own TransformerEncoder built at depth 6 and loaded with the
    duplicated weights computes what the grown encoder computes."""
    enc = make(pos_enc_layer_type="conv")
    enc.grow([0, 0, 1, 1, 2, 2])
    plain = TransformerEncoder(16, num_blocks=6, input_layer="wav2vec", pos_enc_layer_type="conv",
                               normalize_before=False, use_flash_attn=False, **CONF).eval()
    plain.load_state_dict(enc.export_state_dict(), strict=True)
    xs, lens = batch()
    (out, layers), olens, _ = plain(xs, lens, return_all_hs=True)
    hs, ours_lens = enc.forward_hidden_states(xs, lens)
    assert torch.equal(olens, ours_lens)
    for a, b in zip(layers, hs[1:]):
        assert torch.allclose(a, b, atol=1e-6)
    # forward() keeps ESPnet's contract
    out2, _, _ = enc(xs, lens)
    assert torch.allclose(out, out2, atol=1e-6)


def test_growth_keeps_the_states_the_maths_says_it_must():
    enc = make()
    xs, lens = batch()
    before, _ = enc.forward_hidden_states(xs, lens)
    enc.grow([0, 1, 2, 2, 2])  # the first three slots keep their layers
    after, _ = enc.forward_hidden_states(xs, lens)
    for k in range(4):
        assert torch.equal(before[k], after[k])


def test_pre_ln_export_and_after_norm():
    enc = make(normalize_before=True)
    plain = TransformerEncoder(16, num_blocks=3, input_layer="wav2vec", pos_enc_layer_type="conv",
                               normalize_before=True, use_flash_attn=False, **CONF).eval()
    plain.load_state_dict(enc.export_state_dict(), strict=True)
    xs, lens = batch()
    assert torch.allclose(plain(xs, lens)[0], enc(xs, lens)[0], atol=1e-6)
    hs, _ = enc.forward_hidden_states(xs, lens)
    assert torch.allclose(enc.after_norm(hs[-1]), enc(xs, lens)[0])


def test_state_dict_round_trip_restores_depth_and_lineage():
    enc = make()
    enc.grow([0, 0, 1, 1, 2, 2])
    state = enc.state_dict()
    assert state["active_depth"].dtype == torch.float32 and state["lineage_buffer"].is_floating_point()
    fresh = make(seed=5)
    assert fresh.depth == 3
    fresh.load_state_dict(state)
    assert fresh.depth == 6 and fresh.lineage == [0, 0, 1, 1, 2, 2]
    xs, lens = batch()
    assert torch.equal(fresh(xs, lens)[0], enc(xs, lens)[0])


@pytest.mark.parametrize(
    "src,match",
    [([0, 1], "at most|from the active"), ([0, 1, 2, 3], "outside"), (list(range(3)) * 3, "at most")],
)
def test_bad_growths(src, match):
    with pytest.raises(ValueError, match=match):
        make().grow(src)


def test_frame_rate_changing_input_layers_are_refused():
    with pytest.raises(ValueError, match="frame rate"):
        StackingTransformerEncoder(16, input_layer="conv2d", **CONF)
    with pytest.raises(ValueError, match="input_size"):
        StackingTransformerEncoder(8, input_layer="wav2vec", **CONF)


def _trained(optim_cls=torch.optim.AdamW, **kw):
    enc = make().train()
    opt = optim_cls(enc.parameters(), lr=1e-3, **kw)
    xs, lens = batch()
    for _ in range(2):
        enc(xs, lens)[0].pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return enc, opt


def _state(opt, layer):
    return [opt.state.get(p) for p in layer.parameters()]


@pytest.mark.parametrize("foreach", [False, True])
def test_optimizer_copy_rule(foreach):
    enc, opt = _trained(foreach=foreach)
    saved = [[{k: v.clone() for k, v in s.items()} for s in _state(opt, enc.encoders[j])] for j in range(3)]
    src = [0, 0, 1, 1, 2, 2]
    enc.grow(src)
    transfer_optimizer_state(opt, enc, src, "copy")
    for i, j in enumerate(src):
        for got, want in zip(_state(opt, enc.encoders[i]), saved[j]):
            assert set(got) == set(want)
            for k in want:
                assert torch.equal(got[k], want[k])
    # the copy is a copy, not shared storage
    p0, p1 = next(enc.encoders[0].parameters()), next(enc.encoders[1].parameters())
    assert opt.state[p0]["exp_avg"].data_ptr() != opt.state[p1]["exp_avg"].data_ptr()
    xs, lens = batch()
    enc(xs, lens)[0].pow(2).mean().backward()
    opt.step()  # still steps


def test_optimizer_reset_rule_moves_originals_and_frees_copies():
    enc, opt = _trained()
    saved = [[{k: v.clone() for k, v in s.items()} for s in _state(opt, enc.encoders[j])] for j in range(3)]
    src = [0, 0, 1, 1, 2, 2]
    enc.grow(src)
    transfer_optimizer_state(opt, enc, src, "reset")
    for i, j in enumerate(src):
        states = _state(opt, enc.encoders[i])
        if i % 2 == 0:  # originals moved to slots 0, 2, 4 with their moments
            assert all(torch.equal(s["exp_avg"], w["exp_avg"]) for s, w in zip(states, saved[j]))
        else:
            assert all(s is None for s in states)
    xs, lens = batch()
    enc(xs, lens)[0].pow(2).mean().backward()
    opt.step()
    assert float(opt.state[next(enc.encoders[1].parameters())]["step"]) == 1.0


def test_optimizer_reset_all_and_bad_rule():
    enc, opt = _trained()
    enc.grow([0, 0, 1, 1, 2, 2])
    transfer_optimizer_state(opt, enc, [0, 0, 1, 1, 2, 2], "reset_all")
    assert len(opt.state) == 0 and opt.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="rule"):
        transfer_optimizer_state(opt, enc, [0, 1], "keep")
