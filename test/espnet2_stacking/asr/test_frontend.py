import pytest
import torch

from espnet2_stacking.asr.frontend import StackingUpstreamFrontend
from espnet2_stacking.upstreams import load_upstream

UPSTREAM = "random:hubert?layers=3&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2&seed=3"


def batch():
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([8000, 5000])


def upstream_weights(frontend):
    return [p.detach().clone() for p in frontend.upstream.parameters()]


def test_zero_init_weighted_sum_is_the_mean_of_all_states():
    frontend = StackingUpstreamFrontend(upstream=UPSTREAM, fs="16k")
    x, lens = batch()
    states, frame_lens = load_upstream(UPSTREAM).extract_features(x, lens)
    feats, feats_lens = frontend(x, lens)
    assert len(states) == 4 and frontend.output_size() == 16
    assert feats.dtype == torch.float32 and feats.shape == states[0].shape
    assert torch.equal(feats_lens, frame_lens)
    assert torch.allclose(feats, torch.stack(states).mean(0), atol=1e-6)


def test_layer_k_returns_h_k_and_num_layers_limits_the_sum():
    x, lens = batch()
    states, _ = load_upstream(UPSTREAM).extract_features(x, lens)
    one = StackingUpstreamFrontend(upstream=UPSTREAM, layer=1)
    assert list(one.parameters()) == [] and one.num_layers == 1  # h_2, h_3 are not run
    assert torch.equal(one(x, lens)[0], states[1])
    first_two = StackingUpstreamFrontend(upstream=UPSTREAM, num_layers=1)
    assert torch.allclose(first_two(x, lens)[0], (states[0] + states[1]) / 2, atol=1e-6)


def test_gradients_reach_only_the_layer_weights_and_the_upstream_never_changes():
    frontend = StackingUpstreamFrontend(upstream=UPSTREAM)
    assert [n for n, _ in frontend.named_parameters()] == ["featurizer.weights"]
    assert list(frontend.state_dict()) == ["featurizer.weights"]  # no upstream in checkpoints
    before = upstream_weights(frontend)
    optim = torch.optim.Adam(frontend.parameters(), lr=0.1)
    frontend.train()
    x, lens = batch()
    for _ in range(2):
        optim.zero_grad()
        feats, _ = frontend(x, lens)
        (feats ** 2).sum().backward()
        optim.step()
    assert frontend.featurizer.weights.grad.abs().sum() > 0
    assert frontend.featurizer.weights.abs().sum() > 0  # the weights did learn
    assert all(p.grad is None and not p.requires_grad for p in frontend.upstream.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, upstream_weights(frontend)))
    assert frontend.training and not frontend.upstream._module.training  # .train() kept eval


def test_reload_pretrained_parameters_restores_upstream_and_zero_weights():
    frontend = StackingUpstreamFrontend(upstream=UPSTREAM)
    pristine = upstream_weights(frontend)
    with torch.no_grad():
        for p in frontend.upstream.parameters():
            p.add_(1.0)
        frontend.featurizer.weights.fill_(0.5)
    assert not torch.equal(upstream_weights(frontend)[0], pristine[0])
    frontend.reload_pretrained_parameters()
    assert all(torch.equal(a, b) for a, b in zip(pristine, upstream_weights(frontend)))
    assert torch.equal(frontend.featurizer.weights, torch.zeros(4))


def test_low_precision_upstream_still_gives_float32_features():
    frontend = StackingUpstreamFrontend(upstream=UPSTREAM, upstream_dtype="bfloat16")
    feats, _ = frontend(*batch())
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"fs": "8k"}, "fs=8000 but the upstream"),
    ({"fs": 22050}, "fs=22050"),
    ({"layer": 4}, r"layer=4 is not in 0\.\.3"),
    ({"num_layers": 1, "layer": 2}, r"layer=2 is not in 0\.\.1"),
    ({"num_layers": 5}, r"num_layers=5 is not in 0\.\.3"),
    ({"upstream_dtype": "float64"}, "dtype 'float64'"),
])
def test_bad_options_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StackingUpstreamFrontend(**{"upstream": UPSTREAM, **kwargs})


def test_a_missing_upstream_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        StackingUpstreamFrontend(upstream=str(tmp_path / "nope.pth"))
