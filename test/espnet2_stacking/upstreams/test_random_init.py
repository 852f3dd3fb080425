import pytest
import torch

from espnet2_stacking.upstreams import load_upstream
from espnet2_stacking.upstreams.random_init import parse_random_spec


def test_defaults_and_keys():
    arch, opts = parse_random_spec("random:wavlm?layers=3&dim=64&heads=4&seed=7")
    assert arch == "wavlm"
    assert opts == {"layers": 3, "dim": 64, "heads": 4, "ffn": 64, "conv": 32, "pos_kernel": 16,
                    "pos_groups": 4, "pre_ln": 0, "gain": 1, "seed": 7, "buckets": 32, "max_distance": 128}
    teacher = load_upstream("random:wavlm?layers=3&dim=64&heads=4&seed=7")
    assert (teacher.num_layers, teacher.hidden_size, teacher.downsample_rate, teacher.sample_rate) == (3, 64, 320, 16000)
    assert not teacher.layer_norm_first
    assert load_upstream("random:hubert?pre_ln=1").layer_norm_first


@pytest.mark.parametrize(
    "spec,match",
    [
        ("random:bert", "unknown architecture 'bert'"),
        ("random:hubert?layerz=2", "unknown key 'layerz'"),
        ("random:hubert?buckets=8", "unknown key 'buckets'"),  # wavlm only
        ("random:hubert?layers=two", "'layers' must be an integer, got 'two'"),
        ("random:hubert?layers", "key=value pairs"),
        ("random:hubert?dim=30&heads=4", "divisible"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        load_upstream(spec)


def test_weights_are_a_function_of_the_spec_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    one = [p.clone() for p in load_upstream("random:hubert?seed=1").parameters()]
    assert torch.equal(torch.rand(3), expected_next)
    two = list(load_upstream("random:hubert?seed=1").parameters())
    other = list(load_upstream("random:hubert?seed=2").parameters())
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert not all(torch.equal(a, b) for a, b in zip(one, other))
