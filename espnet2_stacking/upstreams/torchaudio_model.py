"""HuBERT, wav2vec 2.0 and WavLM teachers held as torchaudio's Wav2Vec2Model.

Every foreign format (fairseq, unilm WavLM, Hugging Face, random) is converted onto
torchaudio's builders and run by the one forward below, so all of them share the layer
convention, the padding handling and the dtype handling:

    post-LN (Base):  h_0 = LayerNorm(x + pos_conv(x)),  h_k = output of layer k
    pre-LN (Large):  h_0 = x + pos_conv(x),             h_k = output of layer k (raw)

where x is the projected CNN output. Padding is exact: the CNN's group norm uses valid
frames only (see cnn.py), padded frames are zeroed before the positional convolution (as
torchaudio and transformers do) and masked out of every attention.
"""

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Pattern, Sequence, Tuple

import torch
from torchaudio.models import Wav2Vec2Model, wav2vec2_model, wavlm_model
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention
from typeguard import typechecked

from espnet2_stacking.core.text import short_list
from espnet2_stacking.upstreams.abs_upstream import AbsUpstream, padding_mask
from espnet2_stacking.upstreams.cnn import (
    check_frame_rule,
    conv_features,
    conv_shapes,
    grouped_conv_guard,
    normalize_waveforms,
)

ARCHS = ("hubert", "wav2vec2", "wavlm")



@typechecked
def build_torchaudio_model(arch: str, config: Dict) -> Wav2Vec2Model:
    """torchaudio's builder for ``arch`` from its keyword arguments (no aux head).

    HuBERT and wav2vec 2.0 share one architecture (wav2vec2_model); WavLM adds the gated
    relative position bias (wavlm_model: ``encoder_num_buckets``, ``encoder_max_distance``).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}', one of {ARCHS}")
    builder = wavlm_model if arch == "wavlm" else wav2vec2_model
    return builder(aux_num_out=None, **config)


def rename_key(key: str, drop: Pattern, table: Sequence[Tuple[Pattern, str]]) -> Optional[str]:
    """A foreign checkpoint key's torchaudio name by ``table``; None for a key ``drop``
    matches; KeyError for any other key, so nothing is silently left behind."""
    if drop.fullmatch(key):
        return None
    for pattern, target in table:
        if pattern.fullmatch(key):
            return pattern.sub(target, key)
    raise KeyError(key)


def rename_state_dict(state: Mapping[str, torch.Tensor], drop: Pattern,
                      table: Sequence[Tuple[Pattern, str]], wavlm: bool, num_layers: int,
                      path: Path) -> Dict[str, torch.Tensor]:
    """A foreign state dict under torchaudio's names (q, k, v merged for WavLM); every key
    the table does not know is reported at once, naming the file."""
    out, unknown = {}, []
    for key, value in state.items():
        try:
            target = rename_key(key, drop, table)
        except KeyError:
            unknown.append(key)
            continue
        if target is not None:
            out[target] = value
    if unknown:
        raise ValueError(f"{path}: weights this loader does not know: {short_list(unknown)}")
    if not wavlm:
        return out
    try:
        return merge_wavlm_qkv(out, num_layers)
    except KeyError as e:
        raise ValueError(f"{path}: missing attention weight {e.args[0]}") from None


def merge_wavlm_qkv(state: Dict[str, torch.Tensor], num_layers: int) -> Dict[str, torch.Tensor]:
    """WavLM attention in torchaudio is an nn.MultiheadAttention: q, k, v projections
    (named ``...attention.{q,k,v}_proj``) become one ``in_proj`` and ``out_proj`` moves in."""
    out = dict(state)
    for i in range(num_layers):
        prefix = f"encoder.transformer.layers.{i}.attention."
        for part in ("weight", "bias"):
            pieces = [out.pop(f"{prefix}{p}_proj.{part}") for p in "qkv"]
            out[f"{prefix}attention.in_proj_{part}"] = torch.cat(pieces)
            out[f"{prefix}attention.out_proj.{part}"] = out.pop(f"{prefix}out_proj.{part}")
    return out


@typechecked
def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """load_state_dict, with missing / unexpected keys and shape errors naming the file."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: the weights do not fit the model its config describes: "
            f"missing {short_list(missing) or 'none'}; "
            f"unexpected {short_list(unexpected) or 'none'}"
        )
    wrong = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"{path}: weights of the wrong shape: {short_list(wrong, 3)}")
    model.load_state_dict(state, strict=True)


class TorchaudioUpstream(AbsUpstream):
    """A teacher on a torchaudio Wav2Vec2Model (HuBERT, wav2vec 2.0 or WavLM).

    Args:
        model: the built model with its weights loaded (no aux head).
        source: where it came from, for messages.
        normalize_waveform: normalise each utterance to zero mean and unit variance first
            (fairseq task ``normalize``, the HF feature extractor's ``do_normalize``: the
            Large models are trained so).
        waveform_eps: the epsilon of that normalisation (fairseq 1e-5, transformers 1e-7).
        dtype, normalize: see AbsUpstream.
    """

    @typechecked
    def __init__(
        self,
        model: Wav2Vec2Model,
        *,
        source: str,
        normalize_waveform: bool = False,
        waveform_eps: float = 1e-5,
        dtype: str = "float32",
        normalize: str = "none",
    ):
        if model.aux is not None:
            raise ValueError(f"{source}: a teacher has no output head (aux)")
        transformer = model.encoder.transformer
        blocks = model.feature_extractor.conv_layers
        super().__init__(
            model,
            num_layers=len(transformer.layers),
            hidden_size=transformer.pos_conv_embed.embed_dim,
            cnn_channels=blocks[-1].conv.out_channels,
            downsample_rate=check_frame_rule(conv_shapes(blocks), source),
            layer_norm_first=transformer.layers[0].layer_norm_first,
            source=source,
            dtype=dtype,
            normalize=normalize,
        )
        self.normalize_waveform = normalize_waveform
        self.waveform_eps = waveform_eps
        # WavLM's attention takes a key padding mask and refuses an attention mask
        self.is_wavlm = isinstance(transformer.layers[0].attention, WavLMSelfAttention)

    def cnn_state_dict(self) -> Dict[str, torch.Tensor]:
        """The CNN's weights under the names of ESPnet's CNNFrontend (conv, norm, GELU in the
        same order), for initialising a student's frontend as DistilHuBERT does."""
        return {
            k.replace("conv_layers.", "layers.", 1): v.detach().float().clone()
            for k, v in self._module.feature_extractor.state_dict().items()
        }

    def _cnn(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        model = self._module
        compute = model.encoder.feature_projection.projection.weight.dtype
        if self.normalize_waveform:
            wavs = normalize_waveforms(wavs, lengths, self.waveform_eps)
        return conv_features(model.feature_extractor.conv_layers, wavs.to(compute), lengths)

    def _states_from_cnn(
        self, x: torch.Tensor, frames: torch.Tensor, num_layers: int
    ) -> List[torch.Tensor]:
        model = self._module
        x = model.encoder.feature_projection(x)
        pad = padding_mask(frames, x.size(1))
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        transformer = model.encoder.transformer
        with grouped_conv_guard(x):
            x = x + transformer.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = transformer.layer_norm(x)
        states = [x]
        if self.is_wavlm:  # an additive mask in the compute dtype, as its attention wants
            attention_mask = None
            key_padding_mask = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
            key_padding_mask = key_padding_mask.masked_fill(pad, float("-inf"))
        else:
            batch, frames_max = pad.shape
            attention_mask = (~pad)[:, None, None, :].expand(batch, 1, frames_max, frames_max)
            key_padding_mask = None
        position_bias = None
        for layer in transformer.layers[:num_layers]:
            x, position_bias = layer(
                x, attention_mask, position_bias=position_bias, key_padding_mask=key_padding_mask
            )
            states.append(x)
        return states


TORCHAUDIO_CONFIG = "torchaudio_config.json"  # beside model.pth: wav2vec2_model's kwargs


@typechecked
def load_torchaudio_checkpoint(path: Path, dtype: str = "float32",
                               normalize: str = "none") -> TorchaudioUpstream:
    """A teacher from a torchaudio checkpoint: ``path`` holds the state dict of
    ``torchaudio.models.wav2vec2_model(**kwargs)``, the kwargs in torchaudio_config.json beside
    it (what stage 4 writes for a hubert student)."""
    import json

    config_file = path.parent / TORCHAUDIO_CONFIG
    kwargs = json.loads(config_file.read_text(encoding="utf-8"))
    if not isinstance(kwargs, dict) or "encoder_num_layers" not in kwargs:
        raise ValueError(f"{config_file}: not torchaudio.models.wav2vec2_model keyword arguments")
    kwargs = {k: v for k, v in kwargs.items() if k != "aux_num_out"}
    try:
        model = build_torchaudio_model("hubert", kwargs)
    except TypeError as e:
        raise ValueError(f"{config_file}: {e}") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    load_strict(model, state, path)
    return TorchaudioUpstream(model, source=str(path), dtype=dtype, normalize=normalize)
