"""Tiny randomly initialised teachers for tests and smoke runs.

Spec: ``random:<arch>[?key=value&key=value...]`` with arch hubert, wav2vec2 (the same
architecture) or wavlm, and integer keys (defaults):
    layers (2)        transformer layers
    dim (32)          hidden size
    heads (2)         attention heads
    ffn (64)          feed-forward width
    conv (32)         channels of every CNN layer (kernels and strides are wav2vec2's: 320x)
    pos_kernel (16)   positional convolution kernel
    pos_groups (4)    positional convolution groups
    pre_ln (0)        1: a Large-style model (layer-norm CNN with bias, pre-LN transformer)
    gain (1)          scales every feed-forward output: with pre_ln=1 the residual stream then
                      grows with depth, like the high-norm states of WavLM / HuBERT Large
    seed (0)          the weights are a function of the spec (the global RNG is untouched)
    buckets (32), max_distance (128)   wavlm only: relative position buckets
e.g. ``random:hubert?layers=4&dim=32&seed=0``. An unknown key or a non-integer is an error.
"""

from typing import Dict, Tuple
from urllib.parse import parse_qsl

import torch
from typeguard import typechecked

from espnet2_stacking.upstreams.torchaudio_model import (
    ARCHS,
    TorchaudioUpstream,
    build_torchaudio_model,
)

PREFIX = "random:"
KEYS = {"layers": 2, "dim": 32, "heads": 2, "ffn": 64, "conv": 32, "pos_kernel": 16,
        "pos_groups": 4, "pre_ln": 0, "gain": 1, "seed": 0}
WAVLM_KEYS = {"buckets": 32, "max_distance": 128}


@typechecked
def parse_random_spec(spec: str) -> Tuple[str, Dict[str, int]]:
    """``random:<arch>?k=v&...`` -> (arch, every key with its value or default)."""
    if not spec.startswith(PREFIX):
        raise ValueError(f"teacher spec '{spec}' does not start with '{PREFIX}'")
    arch, _, query = spec[len(PREFIX):].partition("?")
    if arch not in ARCHS:
        raise ValueError(f"teacher spec '{spec}': unknown architecture '{arch}', one of {ARCHS}")
    opts = dict(KEYS, **(WAVLM_KEYS if arch == "wavlm" else {}))
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise ValueError(f"teacher spec '{spec}': expected key=value pairs joined by '&'") from None
    for key, value in pairs:
        if key not in opts:
            raise ValueError(
                f"teacher spec '{spec}': unknown key '{key}' (known for {arch}: {sorted(opts)})"
            )
        try:
            opts[key] = int(value)
        except ValueError:
            raise ValueError(
                f"teacher spec '{spec}': '{key}' must be an integer, got '{value}'"
            ) from None
    if opts["dim"] % opts["heads"] or opts["dim"] % opts["pos_groups"]:
        raise ValueError(
            f"teacher spec '{spec}': dim={opts['dim']} must be divisible by heads and pos_groups"
        )
    return arch, opts


def random_model_config(arch: str, opts: Dict[str, int]) -> Dict:
    """torchaudio builder kwargs of a parsed random spec (dropouts off)."""
    conv, pre_ln = opts["conv"], bool(opts["pre_ln"])
    config = {
        "extractor_mode": "layer_norm" if pre_ln else "group_norm",
        "extractor_conv_layer_config": [(conv, 10, 5)] + [(conv, 3, 2)] * 4 + [(conv, 2, 2)] * 2,
        "extractor_conv_bias": pre_ln,
        "encoder_embed_dim": opts["dim"],
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": opts["pos_kernel"],
        "encoder_pos_conv_groups": opts["pos_groups"],
        "encoder_num_layers": opts["layers"],
        "encoder_num_heads": opts["heads"],
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": opts["ffn"],
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": pre_ln,
        "encoder_layer_drop": 0.0,
    }
    if arch == "wavlm":
        config["encoder_num_buckets"] = opts["buckets"]
        config["encoder_max_distance"] = opts["max_distance"]
    return config


@typechecked
def load_random_upstream(
    spec: str, dtype: str = "float32", normalize: str = "none"
) -> TorchaudioUpstream:
    """Build the teacher of a ``random:`` spec (see the module docstring)."""
    arch, opts = parse_random_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        model = build_torchaudio_model(arch, random_model_config(arch, opts))
    if opts["gain"] != 1:
        with torch.no_grad():
            for layer in model.encoder.transformer.layers:
                layer.feed_forward.output_dense.weight.mul_(opts["gain"])
    return TorchaudioUpstream(model, source=spec, dtype=dtype, normalize=normalize)
