import doctest

import pytest
import torch
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from typeguard import TypeCheckError

from espnet2_stacking.student import stacking_encoder
from espnet2_stacking.student.stacking_encoder import StackingTransformerEncoder

DIM = 32
CONF = dict(output_size=DIM, attention_heads=2, linear_units=64, dropout_rate=0.0,
            positional_dropout_rate=0.0, attention_dropout_rate=0.0)
# Hand-written growth maps (new layer i copies old layer src[i]), docs/method.md section 3.
INTERLEAVED_3_6 = [0, 0, 1, 1, 2, 2]
INTERLEAVED_6_9 = [0, 1, 1, 2, 3, 3, 4, 5, 5]
STACKBERT_3_6 = [0, 1, 2, 0, 1, 2]
GRADUAL_3_5 = [0, 1, 2, 1, 2]


def make(depth=3, num_blocks=9, seed=0, **kw):
    torch.manual_seed(seed)
    return StackingTransformerEncoder(DIM, num_blocks=num_blocks, initial_depth=depth,
                                      **{**CONF, **kw}).eval()


def plain(num_blocks, **kw):
    """ESPnet's own encoder with the same settings (flash attention off, as ours)."""
    conf = dict(input_layer="wav2vec", pos_enc_layer_type="conv", normalize_before=False)
    conf.update(CONF, **kw)
    return TransformerEncoder(DIM, num_blocks=num_blocks, use_flash_attn=False, **conf).eval()


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 11, DIM, generator=g), torch.tensor([11, 7, 4])


def layer_state(enc, j):
    return {k: v.clone() for k, v in enc.encoders[j].state_dict().items()}


def test_docstring_example_runs():
    assert doctest.testmod(stacking_encoder).failed == 0


def test_runs_only_the_active_prefix_and_returns_every_state():
    enc = make(depth=3)
    calls = [0] * enc.num_blocks
    for i, layer in enumerate(enc.encoders):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    xs, lens = batch()
    hs, olens = enc.forward_hidden_states(xs, lens)
    assert len(hs) == enc.depth + 1 == 4
    assert all(h.shape == (3, 11, DIM) for h in hs)
    assert olens.tolist() == [11, 7, 4]
    assert calls == [1, 1, 1] + [0] * 6
    # squared, not summed: a plain sum through a post-LN layer's final LayerNorm (unit gain)
    # is constant, so the last active layer would get a gradient of rounding noise only
    sum(h[:, :4].pow(2).sum() for h in hs[1:]).backward()
    for i, layer in enumerate(enc.encoders):
        grads = [p.grad for p in layer.parameters()]
        if i < 3:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), i
        else:
            assert all(g is None for g in grads), f"inactive slot {i} got a gradient"


def test_padded_frames_do_not_reach_valid_frames():
    """Attention ignores padded frames (input_layer None: no positional conv, which would
    see them, as in ESPnet and HuBERT)."""
    enc = make(depth=2, input_layer=None)
    xs, lens = batch()
    xs[1, 7:] = 100.0  # padding of utterance 1
    hs, _ = enc.forward_hidden_states(xs, lens)
    alone, _ = enc.forward_hidden_states(xs[1:2, :7], lens[1:2])
    for k in range(3):
        assert torch.allclose(hs[k][1, :7], alone[k][0], atol=1e-5), k


@pytest.mark.parametrize("src", [INTERLEAVED_3_6, STACKBERT_3_6, GRADUAL_3_5])
def test_grow_copies_bit_exact_and_keeps_parameters(src):
    enc = make(depth=3)
    before = {j: layer_state(enc, j) for j in range(3)}
    untouched = {j: layer_state(enc, j) for j in range(len(src), enc.num_blocks)}
    params = [id(p) for p in enc.parameters()]
    keys = list(enc.state_dict())
    enc.grow(src)
    assert [id(p) for p in enc.parameters()] == params  # nothing added, removed or replaced
    assert list(enc.state_dict()) == keys
    assert enc.depth == len(src) and enc.lineage == src
    for i, j in enumerate(src):
        for k, v in enc.encoders[i].state_dict().items():
            assert torch.equal(v, before[j][k]), (i, j, k)
    for j, state in untouched.items():  # slots beyond the new depth are not written
        assert all(torch.equal(v, state[k]) for k, v in enc.encoders[j].state_dict().items())


def test_two_growths_follow_the_lineage():
    enc = make(depth=3)
    first = {j: layer_state(enc, j) for j in range(3)}
    enc.grow(INTERLEAVED_3_6)
    enc.grow(INTERLEAVED_6_9)
    assert enc.depth == 9 and enc.lineage == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i, g in enumerate(enc.lineage):
        assert all(torch.equal(v, first[g][k]) for k, v in enc.encoders[i].state_dict().items())


def test_explicit_lineage_is_kept():
    enc = make(depth=3)
    enc.grow(GRADUAL_3_5, lineage=[0, 1, 2, 3, 4])
    assert enc.lineage == [0, 1, 2, 3, 4]
    assert enc.lineage_buffer.tolist()[5:] == [-1.0] * 4


@pytest.mark.parametrize("normalize_before", [False, True])
def test_grown_encoder_equals_a_plain_transformer_with_duplicated_weights(normalize_before):
    """Independent check: ESPnet's TransformerEncoder built at depth 6 and loaded by hand with
    the depth-3 weights (layer i taking layer src[i]) computes what the grown encoder does."""
    enc = make(depth=3, normalize_before=normalize_before)
    old = enc.state_dict()
    reference = plain(6, normalize_before=normalize_before)
    by_hand = {}
    for key in reference.state_dict():
        if key.startswith("encoders."):
            _, i, rest = key.split(".", 2)
            by_hand[key] = old[f"encoders.{INTERLEAVED_3_6[int(i)]}.{rest}"]
        else:
            by_hand[key] = old[key]
    reference.load_state_dict(by_hand, strict=True)

    enc.grow(INTERLEAVED_3_6)
    xs, lens = batch()
    (out, layers), olens, _ = reference(xs, lens, return_all_hs=True)
    hs, our_lens = enc.forward_hidden_states(xs, lens)
    assert torch.equal(olens, our_lens) and len(layers) == len(hs) - 1 == 6
    for k, (a, b) in enumerate(zip(layers, hs[1:])):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k
    (our_out, our_layers), _, _ = enc(xs, lens, return_all_hs=True)
    assert torch.allclose(out, our_out, atol=1e-6, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(our_layers, hs[1:]))
    # after_norm applies to forward's output only (ESPnet's convention); h_d is raw.
    want = enc.after_norm(hs[-1]) if normalize_before else hs[-1]
    assert torch.equal(our_out, want)


def test_growth_keeps_the_states_the_maths_says_it_must():
    enc = make(depth=3)
    xs, lens = batch()
    before, _ = enc.forward_hidden_states(xs, lens)
    enc.grow([0, 1, 2, 2, 2])  # the first three slots keep their layers: h_0..h_3 unchanged
    after, _ = enc.forward_hidden_states(xs, lens)
    assert len(after) == 6
    for k in range(4):
        assert torch.equal(before[k], after[k]), k
    assert not torch.allclose(after[4], after[3])

    enc = make(depth=3)
    before, _ = enc.forward_hidden_states(xs, lens)
    enc.grow(INTERLEAVED_3_6)  # slot 0 keeps layer 0: h_0 and h_1 unchanged
    after, _ = enc.forward_hidden_states(xs, lens)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


def test_ssl_style_call_with_a_padding_mask():
    """ESPnet's SSL model calls encoder(x, lens, masks=pad_mask, return_all_hs=True)."""
    enc = make(depth=4)
    xs, lens = batch()
    (out, layers), olens, _ = enc(xs, lens, masks=make_pad_mask(lens), return_all_hs=True)
    hs, _ = enc.forward_hidden_states(xs, lens)
    assert olens.tolist() == lens.tolist() and len(layers) == 4
    assert torch.equal(out, hs[-1]) and all(torch.equal(a, b) for a, b in zip(layers, hs[1:]))


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(normalize_before=True),
     dict(input_layer="linear", pos_enc_layer_type="abs_pos", normalize_before=True),
     dict(input_layer=None, concat_after=True)],
)
def test_export_loads_strictly_into_espnet_transformer_encoder(kw):
    enc = make(depth=3, **kw)
    enc.grow(INTERLEAVED_3_6)
    conf = enc.export_config()
    assert conf["num_blocks"] == 6 and "input_size" not in conf
    exported = TransformerEncoder(DIM, **conf).eval()
    state = enc.export_state_dict()
    assert set(state) == set(exported.state_dict())
    exported.load_state_dict(state, strict=True)
    xs, lens = batch()
    (out, layers), olens, _ = exported(xs, lens, return_all_hs=True)
    hs, our_lens = enc.forward_hidden_states(xs, lens)
    assert torch.equal(olens, our_lens) and len(layers) == 6
    assert all(torch.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(layers, hs[1:]))
    assert torch.allclose(out, enc(xs, lens)[0], atol=1e-6, rtol=0)
    # the export is a copy: training the exported encoder leaves the student alone
    next(iter(state.values())).add_(1.0)
    assert not torch.equal(next(iter(state.values())), next(iter(enc.state_dict().values())))


def test_state_dict_round_trip_restores_depth_and_lineage():
    enc = make(depth=3)
    enc.grow(INTERLEAVED_3_6)
    state = enc.state_dict()
    assert state["active_depth"].dtype == torch.float32 and state["active_depth"].item() == 6.0
    assert state["lineage_buffer"].dtype == torch.float32
    assert state["lineage_buffer"].tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1]
    fresh = make(depth=3, seed=5)
    fresh.load_state_dict(state, strict=True)
    assert fresh.depth == 6 and fresh.lineage == INTERLEAVED_3_6
    xs, lens = batch()
    assert torch.equal(fresh(xs, lens)[0], enc(xs, lens)[0])
    # inside a parent module too (keys carry a prefix)
    parent = torch.nn.ModuleDict({"encoder": make(depth=3, seed=6)})
    parent.load_state_dict({f"encoder.{k}": v for k, v in state.items()})
    assert parent["encoder"].depth == 6 and parent["encoder"].lineage == INTERLEAVED_3_6


def test_averaged_checkpoints_of_different_depths_are_refused():
    a, b = make(depth=3), make(depth=3)
    b.grow(INTERLEAVED_3_6)
    # ESPnet's average_nbest_models averages float tensors key by key
    averaged = {k: (v + b.state_dict()[k]) / 2 for k, v in a.state_dict().items()}
    fresh = make(depth=3)
    with pytest.raises(ValueError, match="averaged"):
        fresh.load_state_dict(averaged)
    assert fresh.depth == 3 and fresh.active_depth.item() == 3.0  # nothing half-loaded
    bad = dict(a.state_dict(), lineage_buffer=torch.tensor([0.0, 1, 2, 3, -1, -1, -1, -1, -1]))
    with pytest.raises(ValueError, match="does not fit"):
        fresh.load_state_dict(bad)


@pytest.mark.parametrize(
    "src,lineage,match",
    [
        ([0, 1], None, "more layers"),
        ([0, 1, 2], None, "more layers"),
        (list(range(3)) * 4, None, "at most"),
        ([0, 1, 2, 3], None, r"outside the active layers 0\.\.2"),
        ([0, 1, 2, -1], None, "outside"),
        ([0, 1, 2, 2], [0, 1, 2], "lineage"),
        ([0, 1, 2, 2], [0, 1, 2, -2], "lineage"),
    ],
)
def test_bad_growths_are_refused_and_change_nothing(src, lineage, match):
    enc = make(depth=3)
    state = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        enc.grow(src, lineage)
    assert enc.depth == 3
    assert all(torch.equal(v, state[k]) for k, v in enc.state_dict().items())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="frame rate"):
        StackingTransformerEncoder(DIM, input_layer="conv2d", **CONF)
    with pytest.raises(ValueError, match="input_size"):
        StackingTransformerEncoder(8, input_layer="wav2vec", **CONF)
    with pytest.raises(ValueError, match="initial_depth"):
        StackingTransformerEncoder(DIM, num_blocks=4, initial_depth=5, **CONF)
    with pytest.raises(ValueError, match="layer_drop_rate"):
        StackingTransformerEncoder(DIM, layer_drop_rate=1.0, **CONF)
    with pytest.raises(ValueError, match="pos_enc_layer_type"):
        StackingTransformerEncoder(DIM, pos_enc_layer_type="rel_pos", **CONF)
    with pytest.raises(TypeCheckError, match="num_blocks"):
        StackingTransformerEncoder(DIM, num_blocks="12", **CONF)


def test_layer_drop_rate_is_exported():
    # its behaviour, for both students: test_hubert_encoder.py
    assert make(depth=3, layer_drop_rate=0.5).export_config()["layer_drop_rate"] == 0.5
