"""Hugging Face HubertModel / WavLMModel / Wav2Vec2Model directories, offline.

transformers reads the directory (config.json + model.safetensors or pytorch_model.bin,
``local_files_only=True``: never a hub name); its config maps onto torchaudio's builder and
its weights are renamed by one explicit table onto the torchaudio model that every teacher
runs on (torchaudio_teacher.py), then loaded strictly. So an HF teacher has the same
padding-exact forward as the others, and our states equal transformers' ``hidden_states``:
h_0 = the input of layer 1 (after the positional convolution, and after the encoder
LayerNorm in post-LN models), h_k = the output of layer k. transformers >= 5 returns the
raw output of layer L last, as we do; transformers 4.x returned ``last_hidden_state`` there,
which in pre-LN models (``do_stable_layer_norm``) has the final LayerNorm.

``preprocessor_config.json``, when present, gives the sampling rate (must be 16000) and
``do_normalize`` (per-utterance zero mean, unit variance, eps 1e-7 as in transformers'
feature extractor); without it the waveform is not normalised.
"""

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.core.text import short_list
from espnet2_stacking.upstreams.torchaudio_model import (
    TorchaudioUpstream,
    build_torchaudio_model,
    load_strict,
    rename_state_dict,
)

logger = logging.getLogger(__name__)

MODEL_TYPES = ("hubert", "wav2vec2", "wavlm")
DROP = re.compile(r"masked_spec_embed")

_L, _T = r"encoder\.layers\.(\d+)\.", r"encoder.transformer.layers.\1."
_WB = r"(weight|bias)"
KEY_TABLE = [
    (r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\." + _WB,
     r"feature_extractor.conv_layers.\1.\2.\3"),
    (r"feature_projection\.(layer_norm|projection)\." + _WB, r"encoder.feature_projection.\1.\2"),
    (r"encoder\.pos_conv_embed\.conv\.(bias|parametrizations\.weight\.original[01])",
     r"encoder.transformer.pos_conv_embed.conv.\1"),
    (r"encoder\.layer_norm\." + _WB, r"encoder.transformer.layer_norm.\1"),
    (_L + r"attention\.(q|k|v|out)_proj\." + _WB, _T + r"attention.\2_proj.\3"),
    (_L + r"(layer_norm|final_layer_norm)\." + _WB, _T + r"\2.\3"),
    (_L + r"feed_forward\.(intermediate_dense|output_dense)\." + _WB, _T + r"feed_forward.\2.\3"),
    # WavLM: relative position bias table (layer 0) and each layer's gate
    (_L + r"attention\.rel_attn_embed\.weight", _T + r"attention.rel_attn_embed.weight"),
    (_L + r"attention\.gru_rel_pos_linear\." + _WB, _T + r"attention.gru_rel_pos_linear.\2"),
    (_L + r"attention\.gru_rel_pos_const", _T + r"attention.gru_rel_pos_const"),
]
KEY_TABLE = [(re.compile(a), b) for a, b in KEY_TABLE]


@typechecked
def model_config(config: Any, path: Path) -> Dict[str, Any]:
    """A transformers config -> torchaudio builder kwargs (dropouts off); raises on what
    torchaudio's model cannot express."""
    checks = {
        "feat_extract_norm": ("group", "layer"),
        "feat_extract_activation": ("gelu",),
        "hidden_act": ("gelu",),
        "layer_norm_eps": (1e-5,),  # torchaudio's LayerNorms use the default 1e-5
        "conv_pos_batch_norm": (False,),
        "feat_proj_layer_norm": (True,),
        "add_adapter": (False,),
    }
    for name, allowed in checks.items():
        if hasattr(config, name) and getattr(config, name) not in allowed:
            raise ValueError(
                f"{path}: {name}={getattr(config, name)!r} is not supported (only {allowed})"
            )
    kwargs = {
        "extractor_mode": f"{config.feat_extract_norm}_norm",
        "extractor_conv_layer_config": list(
            zip(config.conv_dim, config.conv_kernel, config.conv_stride)
        ),
        "extractor_conv_bias": bool(config.conv_bias),
        "encoder_embed_dim": config.hidden_size,
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": config.num_conv_pos_embeddings,
        "encoder_pos_conv_groups": config.num_conv_pos_embedding_groups,
        "encoder_num_layers": config.num_hidden_layers,
        "encoder_num_heads": config.num_attention_heads,
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": config.intermediate_size,
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": bool(config.do_stable_layer_norm),
        "encoder_layer_drop": 0.0,
    }
    if config.model_type == "wavlm":
        kwargs["encoder_num_buckets"] = config.num_buckets
        kwargs["encoder_max_distance"] = config.max_bucket_distance
    return kwargs


@typechecked
def convert_state_dict(
    state: Mapping[str, torch.Tensor], wavlm: bool, num_layers: int, path: Path
) -> Dict[str, torch.Tensor]:
    """transformers weights -> torchaudio names (q, k, v merged for WavLM)."""
    return rename_state_dict(state, DROP, KEY_TABLE, wavlm, num_layers, path)


def _preprocessing(path: Path) -> Tuple[Optional[int], bool]:
    """(sampling_rate or None, do_normalize) from preprocessor_config.json."""
    file = path / "preprocessor_config.json"
    if not file.exists():
        logger.info(f"{path}: no preprocessor_config.json: waveforms are not normalised")
        return None, False
    prep = json.loads(file.read_text(encoding="utf-8"))
    # Wav2Vec2FeatureExtractor's own defaults when the file leaves them out
    return prep.get("sampling_rate"), bool(prep.get("do_normalize", True))


@typechecked
def load_hf_upstream(
    path: Path, dtype: str = "float32", normalize: str = "none"
) -> TorchaudioUpstream:
    """A teacher from a local Hugging Face model directory (see the module docstring)."""
    try:
        import transformers
    except ImportError:
        raise ImportError(
            f"{path} is a Hugging Face model directory: install transformers "
            "(pip install 'espnet2_stacking[hf]')"
        ) from None
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    classes = {"hubert": transformers.HubertModel, "wav2vec2": transformers.Wav2Vec2Model,
               "wavlm": transformers.WavLMModel}
    if config.model_type not in classes:
        raise ValueError(
            f"{path}: model_type '{config.model_type}' is not one of {MODEL_TYPES}"
        )
    kwargs = model_config(config, path)
    rate, do_normalize = _preprocessing(path)
    if rate is not None and int(rate) != SAMPLE_RATE:
        raise ValueError(
            f"{path}: sampling_rate {rate} in preprocessor_config.json; teachers must take "
            f"{SAMPLE_RATE} Hz"
        )
    hf_model, info = classes[config.model_type].from_pretrained(
        path, local_files_only=True, output_loading_info=True
    )
    # A weight the files lack would be randomly initialised by transformers: refuse.
    missing = sorted(k for k in info["missing_keys"] if not DROP.fullmatch(k))
    mismatched = [str(m) for m in info.get("mismatched_keys", [])]
    if missing or mismatched:
        raise ValueError(
            f"{path}: the weight files lack {short_list(missing) or 'nothing'}; "
            f"wrong shapes: {short_list(mismatched) or 'none'}"
        )
    wavlm = config.model_type == "wavlm"
    model = build_torchaudio_model("wavlm" if wavlm else "hubert", kwargs)
    state = convert_state_dict(hf_model.state_dict(), wavlm, kwargs["encoder_num_layers"], path)
    del hf_model
    load_strict(model, state, path)
    return TorchaudioUpstream(
        model, source=str(path), normalize_waveform=do_normalize,
        waveform_eps=1e-7, dtype=dtype, normalize=normalize,
    )
