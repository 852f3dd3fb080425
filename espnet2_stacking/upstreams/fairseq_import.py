"""fairseq HuBERT / wav2vec 2.0 and unilm WavLM checkpoints, without fairseq.

A fairseq checkpoint (``hubert_base_ls960.pt``, ``wav2vec_small.pt``) holds the weights under
``model`` and the config under ``cfg["model"]`` / ``cfg["task"]`` (newer: an omegaconf
DictConfig) or ``args`` (older: an argparse Namespace). A unilm ``WavLM-Base+.pt`` holds
``model`` and a flat ``cfg`` dict. Three small pure steps turn one into a torchaudio model:

1. ``model_config``: the config fields onto torchaudio's builder arguments (fields an old
   checkpoint lacks take fairseq's defaults, listed in ``FAIRSEQ_DEFAULTS``; values this
   loader cannot build, e.g. a conformer layer type, are errors);
2. ``convert_state_dict``: one explicit key table, fairseq names -> torchaudio names; a key
   it does not know is an error, apart from the training-only parts in ``DROP``;
3. strict loading: any missing or unexpected key is an error naming the file.

Reading: ``torch.load(weights_only=True)`` first, with argparse.Namespace allow-listed (a
plain attribute bag). A DictConfig cannot be read that way; then the file is loaded with
``weights_only=False`` after a warning: that can run code stored in the file, so load only
checkpoints you trust (needs omegaconf, which ESPnet installs). Fine-tuned checkpoints
(``w2v_encoder.*``) are not teachers here: give the pretrained one.
"""

import argparse
import ast
import logging
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import torch
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.upstreams.torchaudio_model import (
    TorchaudioUpstream,
    build_torchaudio_model,
    load_strict,
    rename_state_dict,
)

logger = logging.getLogger(__name__)

# fairseq's dataclass defaults for fields older checkpoints may lack.
FAIRSEQ_DEFAULTS = {
    "extractor_mode": "default",
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2",
    "conv_bias": False,
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "activation_fn": "gelu",
    "layer_type": "transformer",
    "pos_conv_depth": 1,
}
# unilm WavLMConfig's defaults for its extra fields.
WAVLM_DEFAULTS = {
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
}
REQUIRED = (
    "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads"
)
EXTRACTOR_MODES = {"default": "group_norm", "layer_norm": "layer_norm"}
MODEL_NAMES = ("hubert", "wav2vec2")

# Training-only parts: the mask embedding, HuBERT's label embeddings and projection,
# wav2vec 2.0's quantiser and its projections.
DROP = re.compile(r"mask_emb|label_embs_concat|(final_proj|quantizer|project_q|target_glu)\..+")

_CNN, _CNN_TA = r"feature_extractor\.conv_layers\.(\d+)\.", r"feature_extractor.conv_layers.\1."
_POS_TA = "encoder.transformer.pos_conv_embed.conv."
_L, _T = r"encoder\.layers\.(\d+)\.", r"encoder.transformer.layers.\1."
_WB = r"(weight|bias)"
KEY_TABLE = [
    (_CNN + r"0\." + _WB, _CNN_TA + r"conv.\2"),
    # the group norm of the first block ("default" extractor)
    (_CNN + r"2\." + _WB, _CNN_TA + r"layer_norm.\2"),
    # the per-block LayerNorm ("layer_norm" extractor: TransposeLast, Fp32LayerNorm, ...)
    (_CNN + r"2\.1\." + _WB, _CNN_TA + r"layer_norm.\2"),
    (r"layer_norm\." + _WB, r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\." + _WB, r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", _POS_TA + "bias"),
    (r"encoder\.pos_conv\.0\.weight_g", _POS_TA + "parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", _POS_TA + "parametrizations.weight.original1"),
    (r"encoder\.layer_norm\." + _WB, r"encoder.transformer.layer_norm.\1"),
    (_L + r"self_attn\.(q|k|v|out)_proj\." + _WB, _T + r"attention.\2_proj.\3"),
    (_L + r"self_attn_layer_norm\." + _WB, _T + r"layer_norm.\2"),
    (_L + r"fc1\." + _WB, _T + r"feed_forward.intermediate_dense.\2"),
    (_L + r"fc2\." + _WB, _T + r"feed_forward.output_dense.\2"),
    (_L + r"final_layer_norm\." + _WB, _T + r"final_layer_norm.\2"),
    # WavLM: the relative position bias table (layer 0 only) and each layer's own gate
    (_L + r"self_attn\.relative_attention_bias\.weight", _T + r"attention.rel_attn_embed.weight"),
    (_L + r"self_attn\.grep_linear\." + _WB, _T + r"attention.gru_rel_pos_linear.\2"),
    (_L + r"self_attn\.grep_a", _T + r"attention.gru_rel_pos_const"),
]
KEY_TABLE = [(re.compile(a), b) for a, b in KEY_TABLE]


# ---- reading -------------------------------------------------------------------------
def _refusal_reason(error: Exception) -> str:
    """The line of torch's weights_only refusal that says what it met."""
    _, _, after = str(error).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in after.splitlines() if line.strip()]
    return (lines[0] if lines else str(error).strip().splitlines()[0]).split(". Please")[0][:160]


@typechecked
def load_checkpoint(path: Path) -> Dict[str, Any]:
    """torch.load a .pt safely if possible; see the module docstring for the fallback."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refusal:
        logger.warning(
            f"{path}: weights_only=True cannot read it ({_refusal_reason(refusal)}): it pickles "
            "objects other than tensors and plain containers (fairseq checkpoints keep an "
            "omegaconf config). Falling back to weights_only=False, which can run code stored "
            "in the file: only load checkpoints you trust"
        )
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except ModuleNotFoundError as e:
            raise ValueError(
                f"{path}: unpickling it needs the module '{e.name}', which is not installed"
            ) from e
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise ValueError(f"{path}: not a readable torch checkpoint ({e})") from e
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a readable torch checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        got = f"keys {sorted(ckpt)[:8]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path}: not a fairseq / unilm checkpoint (expected a dict with 'model' weights, "
            f"got {got})"
        )
    return ckpt


def _plain(obj: Any, path: Path) -> Any:
    """A config object (dict, argparse.Namespace or omegaconf container) as plain dicts."""
    if obj is None or isinstance(obj, dict):
        return obj
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    if "omegaconf" in sys.modules:  # unpickling an omegaconf config has imported it
        from omegaconf import Container, OmegaConf

        if isinstance(obj, Container):
            try:
                return OmegaConf.to_container(obj, resolve=True)
            except Exception as e:  # omegaconf's interpolation errors have no common base
                raise ValueError(f"{path}: its config cannot be resolved: {e}") from e
    raise ValueError(f"{path}: unexpected config type {type(obj).__name__}")


@typechecked
def read_configs(ckpt: Mapping[str, Any], path: Path) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """(style, model config, task config) of a checkpoint; style is "fairseq" or "unilm"."""
    cfg = _plain(ckpt.get("cfg"), path)
    if cfg is not None and "model" in cfg:
        model, task = _plain(cfg["model"], path), _plain(cfg.get("task"), path) or {}
        name = model.get("_name")
        if name is not None and name not in MODEL_NAMES:
            tuned = "ctc" in name or "seq2seq" in name
            hint = " (a fine-tuned model: give the pretrained checkpoint)" if tuned else ""
            raise ValueError(f"{path}: model '{name}' is not one of {MODEL_NAMES}{hint}")
        return "fairseq", model, task
    if cfg is not None and "encoder_layers" in cfg:
        return "unilm", cfg, {}
    args = _plain(ckpt.get("args"), path)
    if args is not None:
        return "fairseq", args, args
    raise ValueError(
        f"{path}: no model config: expected 'cfg' with a 'model' section (fairseq), a flat "
        "'cfg' (unilm WavLM) or 'args' (old fairseq)"
    )


# ---- config ------------------------------------------------------------------------
@typechecked
def eval_conv_layers(expr: str) -> List[Tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers``, e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``,
    evaluated safely: int tuples in lists, ``+`` of lists and ``*`` by a small int only."""

    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(value(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [value(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
                return left + right
            if isinstance(node.op, ast.Mult):
                seq, times = (left, right) if isinstance(left, list) else (right, left)
                if isinstance(seq, list) and type(times) is int and 0 <= times <= 1000:
                    return seq * times
        raise ValueError(f"unsupported element {ast.dump(node)[:80]}")

    try:
        layers = value(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ValueError) as e:
        raise ValueError(
            f"conv_feature_layers {expr!r} is not a list of (dim, kernel, stride): {e}"
        ) from None
    def is_layer(t):
        return isinstance(t, tuple) and len(t) == 3 and all(type(v) is int and v > 0 for v in t)

    if not isinstance(layers, list) or not layers or not all(is_layer(t) for t in layers):
        raise ValueError(f"conv_feature_layers {expr!r} is not a list of (dim, kernel, stride)")
    return layers


def _field(cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any]) -> Any:
    value = cfg.get(name)
    return defaults[name] if value is None else value


@typechecked
def model_config(cfg: Mapping[str, Any], wavlm: bool, path: Path) -> Dict[str, Any]:
    """fairseq / unilm model config -> torchaudio builder kwargs (dropouts off)."""
    missing = [k for k in REQUIRED if cfg.get(k) is None]
    if missing:
        raise ValueError(f"{path}: the model config lacks {missing}")
    defaults = dict(FAIRSEQ_DEFAULTS, **WAVLM_DEFAULTS)
    field = lambda name: _field(cfg, name, defaults)  # noqa: E731
    unsupported = {
        "activation_fn": ("gelu",), "layer_type": ("transformer",), "pos_conv_depth": (1,),
        "extractor_mode": tuple(EXTRACTOR_MODES),
    }
    if wavlm:
        unsupported.update(relative_position_embedding=(True,), gru_rel_pos=(True,))
    for name, allowed in unsupported.items():
        if field(name) not in allowed:
            raise ValueError(f"{path}: {name}={field(name)!r} is not supported (only {allowed})")
    conv = field("conv_feature_layers")
    conv = eval_conv_layers(conv) if isinstance(conv, str) else [tuple(c) for c in conv]
    config = {
        "extractor_mode": EXTRACTOR_MODES[field("extractor_mode")],
        "extractor_conv_layer_config": conv,
        "extractor_conv_bias": bool(field("conv_bias")),
        "encoder_embed_dim": int(cfg["encoder_embed_dim"]),
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": int(field("conv_pos")),
        "encoder_pos_conv_groups": int(field("conv_pos_groups")),
        "encoder_num_layers": int(cfg["encoder_layers"]),
        "encoder_num_heads": int(cfg["encoder_attention_heads"]),
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": int(cfg["encoder_ffn_embed_dim"]),
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": bool(field("layer_norm_first")),
        "encoder_layer_drop": 0.0,
    }
    if wavlm:
        config["encoder_num_buckets"] = int(field("num_buckets"))
        config["encoder_max_distance"] = int(field("max_distance"))
    return config


# ---- weights -----------------------------------------------------------------------
@typechecked
def convert_state_dict(
    state: Mapping[str, torch.Tensor], wavlm: bool, num_layers: int, path: Path
) -> Dict[str, torch.Tensor]:
    """fairseq / unilm weights -> torchaudio names (q, k, v merged for WavLM)."""
    if any(k.startswith("w2v_encoder.") for k in state):
        raise ValueError(
            f"{path}: a fine-tuned checkpoint (w2v_encoder.*): give the pretrained one"
        )
    return rename_state_dict(state, DROP, KEY_TABLE, wavlm, num_layers, path)


# ---- the loader ----------------------------------------------------------------------
@typechecked
def load_fairseq_upstream(
    path: Path, dtype: str = "float32", normalize: str = "none"
) -> TorchaudioUpstream:
    """A teacher from a fairseq HuBERT / wav2vec 2.0 or unilm WavLM ``.pt``."""
    ckpt = load_checkpoint(path)
    style, cfg, task = read_configs(ckpt, path)
    state = ckpt["model"]
    wavlm = any(".self_attn.relative_attention_bias." in k for k in state)
    rate = task.get("sample_rate")
    if rate is not None and int(rate) != SAMPLE_RATE:
        raise ValueError(
            f"{path}: the model was trained at {rate} Hz; teachers must take {SAMPLE_RATE} Hz"
        )
    config = model_config(cfg, wavlm, path)
    model = build_torchaudio_model("wavlm" if wavlm else "hubert", config)
    load_strict(model, convert_state_dict(state, wavlm, config["encoder_num_layers"], path), path)
    # Large models are trained on utterance-normalised audio: fairseq's task.normalize,
    # unilm's cfg.normalize (both F.layer_norm over the waveform, eps 1e-5).
    normalize_waveform = bool((cfg if style == "unilm" else task).get("normalize") or False)
    logger.info(f"{path}: {style} {'WavLM' if wavlm else 'HuBERT/wav2vec2'} teacher, "
                f"{config['encoder_num_layers']} layers, normalize_waveform={normalize_waveform}")
    return TorchaudioUpstream(
        model, source=str(path), normalize_waveform=normalize_waveform, waveform_eps=1e-5,
        dtype=dtype, normalize=normalize,
    )
