"""StackingHubertEncoder, and the growth invariants checked for both student architectures
(test_stacking_encoder.py has the ESPnet-specific ones)."""

import doctest

import pytest
import torch
from torchaudio.models import wav2vec2_model
from torchaudio.models.wav2vec2 import components

from espnet2_stacking.student import hubert_encoder
from espnet2_stacking.student.hubert_encoder import StackingHubertEncoder
from espnet2_stacking.student.stacking_encoder import StackingTransformerEncoder
from espnet2_stacking.training.optimizer_state import transfer_optimizer_state

DIM, CNN = 32, 24
INTERLEAVED_3_6 = [0, 0, 1, 1, 2, 2]
INTERLEAVED_6_9 = [0, 1, 1, 2, 3, 3, 4, 5, 5]
STACKBERT_3_6 = [0, 1, 2, 0, 1, 2]
GRADUAL_3_5 = [0, 1, 2, 1, 2]
HUBERT = dict(output_size=DIM, attention_heads=2, linear_units=64, dropout_rate=0.0,
              attention_dropout_rate=0.0, projection_dropout_rate=0.0, pos_conv_kernel=4,
              pos_conv_groups=4)
ESPNET = dict(output_size=DIM, attention_heads=2, linear_units=64, dropout_rate=0.0,
              positional_dropout_rate=0.0, attention_dropout_rate=0.0)
ARCHS = ("espnet", "hubert")


def make(arch, depth=3, num_blocks=9, seed=0, **kw):
    torch.manual_seed(seed)
    if arch == "hubert":
        return StackingHubertEncoder(CNN, num_blocks=num_blocks, initial_depth=depth,
                                     **{**HUBERT, **kw}).eval()
    return StackingTransformerEncoder(DIM, num_blocks=num_blocks, initial_depth=depth,
                                      **{**ESPNET, **kw}).eval()


def batch(arch, seed=1):
    g = torch.Generator().manual_seed(seed)
    width = CNN if arch == "hubert" else DIM
    return torch.randn(3, 11, width, generator=g), torch.tensor([11, 7, 4])


def layer_state(enc, j):
    return {k: v.clone() for k, v in enc.layer_slots()[j].state_dict().items()}


def test_docstring_example_runs():
    assert doctest.testmod(hubert_encoder).failed == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_runs_only_the_active_prefix_and_only_it_learns(arch):
    enc = make(arch, depth=3)
    calls = [0] * enc.num_blocks
    for i, layer in enumerate(enc.layer_slots()):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    xs, lens = batch(arch)
    hs, olens = enc.forward_hidden_states(xs, lens)
    assert len(hs) == 4 and all(h.shape == (3, 11, DIM) for h in hs)
    assert olens.tolist() == [11, 7, 4] and calls == [1, 1, 1] + [0] * 6
    # squared, not summed: a plain sum through a post-LN layer's final LayerNorm (unit gain)
    # is constant, so the last active layer would get a gradient of rounding noise only
    sum(h[:, :4].pow(2).sum() for h in hs[1:]).backward()
    for i, layer in enumerate(enc.layer_slots()):
        grads = [p.grad for p in layer.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads) if i < 3 else \
            all(g is None for g in grads), i


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", [INTERLEAVED_3_6, STACKBERT_3_6, GRADUAL_3_5])
def test_grow_copies_bit_exact_and_keeps_parameters(arch, src):
    enc = make(arch, depth=3)
    before = {j: layer_state(enc, j) for j in range(3)}
    untouched = {j: layer_state(enc, j) for j in range(len(src), enc.num_blocks)}
    params = [id(p) for p in enc.parameters()]
    keys = list(enc.state_dict())
    enc.grow(src)
    assert [id(p) for p in enc.parameters()] == params and list(enc.state_dict()) == keys
    assert enc.depth == len(src) and enc.lineage == src
    for i, j in enumerate(src):
        assert all(torch.equal(v, before[j][k]) for k, v in enc.layer_slots()[i].state_dict().items())
    for j, state in untouched.items():
        assert all(torch.equal(v, state[k]) for k, v in enc.layer_slots()[j].state_dict().items())


@pytest.mark.parametrize("arch", ARCHS)
def test_two_growths_follow_the_lineage_and_keep_the_untouched_prefix(arch):
    enc = make(arch, depth=3)
    first = {j: layer_state(enc, j) for j in range(3)}
    xs, lens = batch(arch)
    before, _ = enc.forward_hidden_states(xs, lens)
    enc.grow(INTERLEAVED_3_6)
    after, _ = enc.forward_hidden_states(xs, lens)
    # slot 0 keeps layer 0: h_0 and h_1 unchanged; h_2 is now layer 0 again
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])
    enc.grow(INTERLEAVED_6_9)
    assert enc.depth == 9 and enc.lineage == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i, g in enumerate(enc.lineage):
        assert all(torch.equal(v, first[g][k]) for k, v in enc.layer_slots()[i].state_dict().items())


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_round_trip_and_averaged_checkpoints_refused(arch):
    enc = make(arch, depth=3)
    enc.grow(INTERLEAVED_3_6)
    state = enc.state_dict()
    assert state["lineage_buffer"].tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1]
    fresh = make(arch, depth=3, seed=5)
    fresh.load_state_dict(state, strict=True)
    xs, lens = batch(arch)
    assert fresh.depth == 6 and fresh.lineage == INTERLEAVED_3_6
    assert torch.equal(fresh.forward_hidden_states(xs, lens)[0][-1],
                       enc.forward_hidden_states(xs, lens)[0][-1])
    shallow = make(arch, depth=3)
    averaged = {k: (v + state[k]) / 2 for k, v in shallow.state_dict().items()}
    with pytest.raises(ValueError, match="averaged"):
        fresh.load_state_dict(averaged)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src,match", [([0, 1], "more layers"), ([0, 1, 2, 3], "outside")])
def test_bad_growths_are_refused_and_change_nothing(arch, src, match):
    enc = make(arch, depth=3)
    state = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        enc.grow(src)
    assert enc.depth == 3 and all(torch.equal(v, state[k]) for k, v in enc.state_dict().items())


@pytest.mark.parametrize("arch", ARCHS)
def test_optimizer_state_follows_the_growth(arch):
    enc = make(arch, depth=3)
    optimizer = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    xs, lens = batch(arch)
    enc.forward_hidden_states(xs, lens)[0][-1].pow(2).mean().backward()
    optimizer.step()
    moments = {j: [optimizer.state[p]["exp_avg"].clone() for p in enc.layer_slots()[j].parameters()]
               for j in range(3)}
    enc.grow(INTERLEAVED_3_6)
    transfer_optimizer_state(optimizer, enc, INTERLEAVED_3_6, "copy")
    for i, j in enumerate(INTERLEAVED_3_6):  # each slot holds its source's moments
        params = list(enc.layer_slots()[i].parameters())
        assert all(torch.equal(optimizer.state[p]["exp_avg"], m) for p, m in zip(params, moments[j]))


# ---- HuBERT-specific -------------------------------------------------------------------
def test_grown_student_is_torchaudios_hubert_encoder_with_the_lineages_weights():
    """The active layers exported load strictly into torchaudio's own encoder at that depth
    and compute the same states (h_0 = LayerNorm(x + conv(x)), post-LN layers)."""
    enc = make("hubert", depth=3)
    enc.grow(INTERLEAVED_3_6)
    conf = enc.torchaudio_config()
    assert conf["encoder_num_layers"] == 6
    model = wav2vec2_model(extractor_mode="group_norm", extractor_conv_layer_config=[(CNN, 10, 5)],
                           extractor_conv_bias=False, aux_num_out=None, **conf).eval()
    state = enc.export_state_dict()
    assert set(state) == set(model.encoder.state_dict())
    model.encoder.load_state_dict(state, strict=True)
    xs, lens = batch("hubert")
    hs, _ = enc.forward_hidden_states(xs[:1], lens[:1])
    theirs = model.encoder.extract_features(xs[:1])  # outputs of layers 1..6
    assert len(theirs) == 6
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(theirs, hs[1:]))
    # state 0: torchaudio's transformer input after its LayerNorm (post-LN)
    x = model.encoder.feature_projection(xs[:1])
    x = model.encoder.transformer.layer_norm(x + model.encoder.transformer.pos_conv_embed(x))
    assert torch.allclose(x, hs[0], atol=1e-6)
    # layers are torchaudio's blocks with GELU feed-forward
    assert isinstance(enc.layer_slots()[0], components.EncoderLayer)


def test_padded_frames_do_not_reach_valid_frames():
    enc = make("hubert", depth=2)
    xs, lens = batch("hubert")
    xs[1, 7:] = 100.0
    hs, _ = enc.forward_hidden_states(xs, lens)
    alone, _ = enc.forward_hidden_states(xs[1:2, :7], lens[1:2])
    assert all(torch.allclose(hs[k][1, :7], alone[k][0], atol=1e-5) for k in range(3))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="initial_depth"):
        StackingHubertEncoder(CNN, num_blocks=4, initial_depth=5, **HUBERT)
    with pytest.raises(ValueError, match="layer_drop_rate"):
        StackingHubertEncoder(CNN, layer_drop_rate=1.0, **HUBERT)
    with pytest.raises(ValueError, match="divisible"):
        StackingHubertEncoder(CNN, **{**HUBERT, "attention_heads": 5})
    with pytest.raises(ValueError, match=r"CNN features \(batch, frames, 24\)"):
        make("hubert").forward_hidden_states(torch.zeros(1, 5, DIM), torch.tensor([5]))


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_drop_keeps_one_state_per_layer_and_only_in_training(arch):
    enc = make(arch, depth=3, layer_drop_rate=0.5)
    xs, lens = batch(arch)
    evaluated, _ = enc.forward_hidden_states(xs, lens)
    enc.train()
    torch.manual_seed(0)
    keep = (torch.rand(3) >= 0.5).tolist()
    torch.manual_seed(0)
    hs, _ = enc.forward_hidden_states(xs, lens)
    assert len(hs) == 4 and 0 < sum(keep) < 3  # this seed drops some layers, not all
    for k in range(3):
        assert torch.equal(hs[k + 1], hs[k]) != keep[k], k
    enc.eval()
    again, _ = enc.forward_hidden_states(xs, lens)
    assert all(torch.equal(a, b) for a, b in zip(evaluated, again))


def test_paper_size_parameter_count():
    """12 x 384, FFN 1536, on HuBERT Base's 512-channel CNN output (the CNN is the frontend's)."""
    enc = StackingHubertEncoder(512)
    assert sum(p.numel() for p in enc.parameters()) == 22_672_512
