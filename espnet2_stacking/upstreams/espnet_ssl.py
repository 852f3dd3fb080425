"""Teachers trained with ESPnet's SSL task (config.yaml + .pth, as espnet2's ssl_train writes).

Spec: the ``.pth`` file; its ``config.yaml`` must be in the same directory (ESPnet's own
default in ``build_model_from_file``). The model is built by
``espnet2.tasks.ssl.SSLTask.build_model_from_file``; since that loads with strict=False,
the file's keys are compared with the model's here and any difference is an error.

States: h_0 = the encoder's input layer output (e.g. with ``input_layer: wav2vec``, the
convolutional positional embedding and its LayerNorm), h_k = output of encoder block k, as
``inference_encode``'s per-layer outputs; in pre-LN encoders (``normalize_before``) the
encoder's ``after_norm`` is not applied to any state.

Supported: the ``wav2vec_cnn`` frontend (CNNFrontend) and ESPnet's TransformerEncoder with
an input layer that keeps the frame rate (``wav2vec``, ``linear`` or none) and at most one
positional convolution. The forward below runs the model's own modules, adding only what
makes padding exact: group norm over valid frames, padded frames zeroed before the
utterance normalisation and before any positional convolution, attention masks.
"""

import logging
from pathlib import Path
from typing import Dict, List, Tuple

import humanfriendly
import torch
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.core.text import short_list
from espnet2_stacking.upstreams.abs_upstream import AbsUpstream, padding_mask
from espnet2_stacking.upstreams.cnn import (
    check_frame_rule,
    conv_features,
    conv_shapes,
    grouped_conv_guard,
    normalize_waveforms,
)

logger = logging.getLogger(__name__)


def _check_supported(model: torch.nn.Module, source: str) -> None:
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.frontend.cnn import CNNFrontend
    from espnet2.legacy.nets.pytorch_backend.transformer.embedding import (
        ConvolutionalPositionalEmbedding,
    )

    if not isinstance(model.frontend, CNNFrontend):
        raise ValueError(
            f"{source}: frontend {type(model.frontend).__name__} is not supported as a teacher "
            "(the wav2vec_cnn frontend is: 50 frames/s from raw waveforms)"
        )
    encoder = model.encoder
    if not isinstance(encoder, TransformerEncoder):
        raise ValueError(
            f"{source}: encoder {type(encoder).__name__} is not supported as a teacher "
            "(TransformerEncoder is)"
        )
    if encoder.interctc_use_conditioning:
        raise ValueError(f"{source}: an encoder with interctc conditioning is not supported")
    embed = encoder.embed
    if embed is not None and not isinstance(embed, (torch.nn.Sequential, torch.nn.Linear)):
        raise ValueError(
            f"{source}: the encoder's input layer {type(embed).__name__} changes the frame "
            "rate; a teacher needs input_layer wav2vec, linear or none"
        )
    for m in embed if isinstance(embed, torch.nn.Sequential) else []:
        if isinstance(m, ConvolutionalPositionalEmbedding) and len(m.convs) != 1:
            raise ValueError(
                f"{source}: a positional embedding of {len(m.convs)} convolutions would mix "
                "padded frames into valid ones; one convolution is supported"
            )


class ESPnetSSLUpstream(AbsUpstream):
    """A teacher on an ESPnetSSLModel (see the module docstring)."""

    @typechecked
    def __init__(self, model: torch.nn.Module, *, source: str, dtype: str = "float32",
                 normalize: str = "none"):
        _check_supported(model, source)
        super().__init__(
            model,
            num_layers=len(model.encoder.encoders),
            hidden_size=model.encoder.output_size(),
            cnn_channels=model.frontend.output_size(),
            downsample_rate=check_frame_rule(conv_shapes(model.frontend.layers), source),
            layer_norm_first=bool(model.encoder.normalize_before),
            source=source,
            dtype=dtype,
            normalize=normalize,
        )

    def cnn_state_dict(self) -> Dict[str, torch.Tensor]:
        """The CNN's weights for a student's frontend: the same ESPnet class, the same names."""
        return {k: v.detach().float().clone() for k, v in self._module.frontend.state_dict().items()}

    def _cnn(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        frontend = self._module.frontend
        compute = next(frontend.parameters()).dtype
        if frontend.normalize_audio:  # ESPnet normalises the whole batch tensor; we, each utterance
            wavs = normalize_waveforms(wavs, lengths, 1e-5)
        x, frames = conv_features(frontend.layers, wavs.to(compute), lengths)
        return frontend.final_norm(x), frames

    def _states_from_cnn(
        self, x: torch.Tensor, frames: torch.Tensor, num_layers: int
    ) -> List[torch.Tensor]:
        from espnet2.legacy.nets.pytorch_backend.transformer.embedding import (
            ConvolutionalPositionalEmbedding,
        )

        model = self._module
        pad = padding_mask(frames, x.size(1)).unsqueeze(-1)
        if model.normalize is not None:
            x, frames = model.normalize(x, frames)
        if model.preencoder is not None:
            x, frames = model.preencoder(x, frames)
        encoder = model.encoder
        embed = encoder.embed
        for m in embed if isinstance(embed, torch.nn.Sequential) else [embed]:
            if m is None:
                continue
            if isinstance(m, ConvolutionalPositionalEmbedding):
                x = x.masked_fill(pad, 0.0)
            with grouped_conv_guard(x):
                x = m(x)
        states = [x]
        masks = ~pad.transpose(1, 2)  # (batch, 1, frames), True at valid frames
        for layer in list(encoder.encoders)[:num_layers]:
            x, masks = layer(x, masks)
            states.append(x)
        return states


def _state_dict_of(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for wrapper in ("module", "state_dict"):  # deepspeed / lightning, as ESPnet accepts
        if wrapper in state:
            state = state[wrapper]
    return state


@typechecked
def load_espnet_ssl_upstream(model_file: Path, dtype: str = "float32",
                            normalize: str = "none") -> ESPnetSSLUpstream:
    """A teacher from an ESPnet SSL ``.pth`` with ``config.yaml`` beside it."""
    config_file = model_file.parent / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(
            f"{model_file}: an ESPnet SSL model needs its config.yaml in the same directory "
            f"({config_file} is missing)"
        )
    from espnet2.tasks.ssl import SSLTask

    model, args = SSLTask.build_model_from_file(config_file, model_file, device="cpu")
    fs = args.frontend_conf.get("fs", SAMPLE_RATE)
    fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else fs
    if fs != SAMPLE_RATE:
        raise ValueError(f"{config_file}: frontend fs={fs}; teachers must take {SAMPLE_RATE} Hz")
    # build_model_from_file loads with strict=False: check that every key matched.
    have, want = set(_state_dict_of(model_file)), set(model.state_dict())
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        raise ValueError(
            f"{model_file}: the weights do not fit {config_file}: missing "
            f"{short_list(missing) or 'none'}; unexpected {short_list(unexpected) or 'none'}"
        )
    logger.info(f"{model_file}: ESPnet SSL teacher, {len(model.encoder.encoders)} layers")
    return ESPnetSSLUpstream(model, source=str(model_file), dtype=dtype, normalize=normalize)
