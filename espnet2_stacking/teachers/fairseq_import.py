"""fairseq HuBERT / wav2vec 2.0 and unilm WavLM checkpoints, without fairseq.

A checkpoint holds the weights under ``model`` and the config under ``cfg["model"]`` (newer,
an omegaconf dict) or ``args`` (older, an argparse Namespace). The config maps onto torchaudio's
builders and the weights are renamed by one explicit table; a key the table does not know is an
error (a short list of training-only keys aside), and loading is strict.
"""

import ast
import logging
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

# Training-only parts: masking, targets, quantiser, the HuBERT label projection.
DROP = re.compile(
    r"^(mask_emb|label_embs_concat|final_proj\..*|quantizer\..*|project_q\..*|"
    r"target_glu\..*|encoder\.layers\.\d+\.self_attn\.(k|q|v)_proj\.bias_k|.*\.num_updates)$"
)

RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)$", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"^layer_norm\.(weight|bias)$", r"encoder.feature_projection.layer_norm.\1"),
    (r"^post_extract_proj\.(weight|bias)$", r"encoder.feature_projection.projection.\1"),
    (r"^encoder\.pos_conv\.0\.bias$", r"encoder.transformer.pos_conv_embed.conv.bias"),
    (r"^encoder\.pos_conv\.0\.weight_g$", r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.transformer.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)$", r"encoder.transformer.layers.\1.attention.\2_proj.\3"),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$", r"encoder.transformer.layers.\1.layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$", r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$", r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$", r"encoder.transformer.layers.\1.final_layer_norm.\2"),
    # WavLM: the relative position bias table (layer 0 only) and each layer's gate
    (r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$", r"encoder.transformer.layers.\1.attention.rel_attn_embed.weight"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)$", r"encoder.transformer.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$", r"encoder.transformer.layers.\1.attention.gru_rel_pos_const"),
]
RENAMES = [(re.compile(a), b) for a, b in RENAMES]


def map_key(key: str) -> str:
    for pattern, repl in RENAMES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    raise KeyError(key)


def convert_state_dict(state: Dict[str, torch.Tensor], wavlm: bool, source: str) -> Dict[str, torch.Tensor]:
    """fairseq / unilm names -> torchaudio names; WavLM's q, k, v merge into in_proj."""
    out: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if DROP.match(key):
            continue
        try:
            out[map_key(key)] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{source}: keys this loader does not know: {unknown[:8]}"
                       f"{' ...' if len(unknown) > 8 else ''}")
    if wavlm:
        layers = sorted({int(m.group(1)) for k in out
                         if (m := re.match(r"encoder\.transformer\.layers\.(\d+)\.attention\.q_proj", k))})
        for i in layers:
            prefix = f"encoder.transformer.layers.{i}.attention."
            for part in ("weight", "bias"):
                q, k, v = (out.pop(f"{prefix}{n}_proj.{part}") for n in "qkv")
                out[f"{prefix}attention.in_proj_{part}"] = torch.cat([q, k, v])
            out[f"{prefix}attention.out_proj.weight"] = out.pop(f"{prefix}out_proj.weight")
            out[f"{prefix}attention.out_proj.bias"] = out.pop(f"{prefix}out_proj.bias")
    return out


def _field(cfg: Any, name: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def torchaudio_config(cfg: Any, wavlm: bool) -> Dict[str, Any]:
    """fairseq's model config -> torchaudio builder kwargs (inference: dropouts are moot)."""
    def need(name):
        value = _field(cfg, name)
        if value is None:
            raise KeyError(f"the checkpoint's config has no '{name}'")
        return value

    conv = need("conv_feature_layers")
    conv = ast.literal_eval(conv) if isinstance(conv, str) else conv
    config = {
        "extractor_mode": "layer_norm" if _field(cfg, "extractor_mode", "default") == "layer_norm" else "group_norm",
        "extractor_conv_layer_config": [tuple(c) for c in conv],
        "extractor_conv_bias": bool(_field(cfg, "conv_bias", False)),
        "encoder_embed_dim": int(need("encoder_embed_dim")),
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": int(_field(cfg, "conv_pos", 128)),
        "encoder_pos_conv_groups": int(_field(cfg, "conv_pos_groups", 16)),
        "encoder_num_layers": int(need("encoder_layers")),
        "encoder_num_heads": int(need("encoder_attention_heads")),
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": int(need("encoder_ffn_embed_dim")),
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": bool(_field(cfg, "layer_norm_first", False)),
        "encoder_layer_drop": 0.0,
    }
    if wavlm:
        config["encoder_num_buckets"] = int(_field(cfg, "relative_position_embedding_buckets", None)
                                            or _field(cfg, "num_buckets", 320))
        config["encoder_max_distance"] = int(_field(cfg, "max_distance", 800))
    return config


def torch_load_checkpoint(path: Path) -> Dict[str, Any]:
    """weights_only first; old checkpoints pickle an argparse Namespace or omegaconf objects,
    which need a full unpickle: done only then, with a warning."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError subclasses with varying types
        logging.warning(
            f"{path}: cannot be read with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]}); loading it with weights_only=False, which runs "
            "pickled code: only do this with checkpoints you trust"
        )
        return torch.load(path, map_location="cpu", weights_only=False)


def read_fairseq_checkpoint(path: Path) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], bool]:
    """(torchaudio config, torchaudio state dict, is_wavlm) from a fairseq / unilm .pt."""
    ckpt = torch_load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not a fairseq/unilm checkpoint (no 'model' entry)")
    state = ckpt["model"]
    cfg = None
    if ckpt.get("cfg") is not None:
        cfg = _field(ckpt["cfg"], "model")
    if cfg is None and ckpt.get("args") is not None:
        cfg = ckpt["args"]
    if cfg is None:
        raise ValueError(f"{path}: no model config under 'cfg'/'model' or 'args'")
    wavlm = any("relative_attention_bias" in k or "grep_linear" in k for k in state)
    try:
        config = torchaudio_config(cfg, wavlm)
    except KeyError as e:
        raise ValueError(f"{path}: {e.args[0]}") from None
    return config, convert_state_dict(state, wavlm, str(path)), wavlm
