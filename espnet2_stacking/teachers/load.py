"""load_teacher(spec): every teacher format users bring, behind one call.

Specs:
- ``random:<arch>?key=value&...``: a tiny randomly initialised teacher (tests, smoke runs).
  arch: hubert, wav2vec2 or wavlm; keys (defaults): layers (2), dim (32), heads (2),
  ffn (64), conv (32, channels of every CNN layer), pos_kernel (16), pos_groups (4),
  pre_ln (0), seed (0); wavlm also buckets (32), max_distance (128).
- a directory with config.json: a Hugging Face HubertModel / WavLMModel / Wav2Vec2Model,
  read offline (local files only) with transformers.
- a ``.pt`` file: a fairseq HuBERT / wav2vec 2.0 or unilm WavLM checkpoint (no fairseq needed).
- a ``.pth`` file with ``config.yaml`` beside it (or ``config.yaml:model.pth``): an ESPnet
  SSL-task model.
"""

import logging
from pathlib import Path
from typing import Dict
from urllib.parse import parse_qsl

import torch

from espnet2_stacking.teachers.abs_teacher import AbsTeacher
from espnet2_stacking.teachers.torchaudio_teacher import TorchaudioTeacher, build_torchaudio_model

RANDOM_ARCHS = ("hubert", "wav2vec2", "wavlm")
RANDOM_KEYS = {"layers": 2, "dim": 32, "heads": 2, "ffn": 64, "conv": 32, "pos_kernel": 16,
               "pos_groups": 4, "pre_ln": 0, "seed": 0, "buckets": 32, "max_distance": 128}
SUPPORTED = ("random:<hubert|wav2vec2|wavlm>?key=value, a Hugging Face model directory "
             "(config.json), a fairseq/unilm .pt, or an ESPnet SSL .pth with config.yaml")


def random_config(spec: str) -> Dict:
    body = spec[len("random:"):]
    arch, _, query = body.partition("?")
    if arch not in RANDOM_ARCHS:
        raise ValueError(f"teacher spec '{spec}': unknown architecture '{arch}', one of {RANDOM_ARCHS}")
    opts = dict(RANDOM_KEYS)
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in RANDOM_KEYS or (arch != "wavlm" and key in ("buckets", "max_distance")):
            raise ValueError(f"teacher spec '{spec}': unknown key '{key}'")
        try:
            opts[key] = int(value)
        except ValueError:
            raise ValueError(f"teacher spec '{spec}': '{key}' must be an integer, got '{value}'")
    config = {
        "extractor_mode": "group_norm",
        "extractor_conv_layer_config": [(opts["conv"], 10, 5)] + [(opts["conv"], 3, 2)] * 4
        + [(opts["conv"], 2, 2)] * 2,
        "extractor_conv_bias": False,
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
        "encoder_layer_norm_first": bool(opts["pre_ln"]),
        "encoder_layer_drop": 0.0,
    }
    if arch == "wavlm":
        config["encoder_num_buckets"] = opts["buckets"]
        config["encoder_max_distance"] = opts["max_distance"]
    return {"arch": arch, "seed": opts["seed"], "config": config}


def load_random(spec: str, dtype: str, normalize: str) -> AbsTeacher:
    parsed = random_config(spec)
    with torch.random.fork_rng():
        torch.manual_seed(parsed["seed"])
        model = build_torchaudio_model(parsed["arch"], parsed["config"])
    return TorchaudioTeacher(model, parsed["config"]["encoder_layer_norm_first"], dtype=dtype,
                             normalize=normalize, name=spec)


def load_huggingface(path: Path, dtype: str, normalize: str) -> AbsTeacher:
    try:
        import transformers
    except ImportError:
        raise ImportError(f"{path} is a Hugging Face model: install transformers "
                          "(pip install 'espnet2_stacking[hf]')") from None
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    classes = {"hubert": transformers.HubertModel, "wav2vec2": transformers.Wav2Vec2Model,
               "wavlm": transformers.WavLMModel}
    if config.model_type not in classes:
        raise ValueError(f"{path}: model_type '{config.model_type}' is not one of {list(classes)}")
    hf_model = classes[config.model_type].from_pretrained(path, local_files_only=True).eval()
    model = import_huggingface_model(hf_model)
    return TorchaudioTeacher(model, bool(config.do_stable_layer_norm), dtype=dtype,
                             normalize=normalize, name=str(path))


def load_fairseq(path: Path, dtype: str, normalize: str) -> AbsTeacher:
    from espnet2_stacking.teachers.fairseq_import import read_fairseq_checkpoint

    config, state, wavlm = read_fairseq_checkpoint(path)
    model = build_torchaudio_model("wavlm" if wavlm else "hubert", config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f"{path}: weights do not fit the config: missing {result.missing_keys[:5]}, "
                       f"unexpected {result.unexpected_keys[:5]}")
    return TorchaudioTeacher(model, config["encoder_layer_norm_first"], dtype=dtype,
                             normalize=normalize, name=str(path))


def load_teacher(spec: str, *, dtype: str = "float32", device: str = "cpu",
                 normalize: str = "none") -> AbsTeacher:
    """Load a frozen teacher from ``spec`` (see the module docstring), on ``device``."""
    if spec.startswith("random:"):
        teacher = load_random(spec, dtype, normalize)
    else:
        config_file = None
        if ":" in spec and spec.split(":", 1)[0].endswith((".yaml", ".yml")):
            config_file, spec = (Path(p) for p in spec.split(":", 1))
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"teacher '{spec}' not found (expected {SUPPORTED})")
        if path.is_dir() and (path / "config.json").exists():
            teacher = load_huggingface(path, dtype, normalize)
        elif path.is_file() and path.suffix == ".pth":
            from espnet2_stacking.teachers.espnet_ssl_teacher import ESPnetSSLTeacher

            config_file = config_file or path.parent / "config.yaml"
            if not config_file.exists():
                raise FileNotFoundError(f"{path}: an ESPnet model needs its config.yaml ({config_file})")
            teacher = ESPnetSSLTeacher(path, config_file, dtype=dtype, normalize=normalize)
        elif path.is_file() and path.suffix == ".pt":
            teacher = load_fairseq(path, dtype, normalize)
        else:
            raise ValueError(f"teacher '{spec}': unknown format (expected {SUPPORTED})")
    if teacher.layer_norm_first:
        logging.info(
            f"{teacher}: a pre-LN teacher; its states are raw residual streams (the final "
            "LayerNorm is not applied) whose scale grows with depth; normalize='layer_norm' "
            "evens them out"
        )
    return teacher.to(device)
