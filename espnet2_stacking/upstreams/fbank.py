"""Log-mel filterbanks as an upstream: SUPERB's FBANK baseline row.

Spec: ``fbank[?n_mels=N]`` (default 80). The "upstream" has no layers and no weights: h_0 is
the log-mel spectrogram on the frame grid of every SSL upstream here (25 ms window, 20 ms hop,
no padding: ``num_frames(n) = 1 + (n - 400) // 320``), so a downstream head trained on it has
the same input rate, and the same budget, as one trained on a student or a teacher. SUPERB's
own FBANK uses a 10 ms hop; at 20 ms the head sees half the frames, which matches what it sees
from the SSL upstreams. No normalisation here: the downstream config's ``normalize`` applies
to every upstream alike.
"""

from typing import List, Tuple
from urllib.parse import parse_qsl

import torch
import torchaudio
from typeguard import typechecked

from espnet2_stacking.core.frames import HOP, SAMPLE_RATE, WINDOW
from espnet2_stacking.upstreams.abs_upstream import AbsUpstream

PREFIX = "fbank"
LOG_FLOOR = 1e-6  # power floor before the log: silence gives -13.8, not -inf


@typechecked
def parse_fbank_spec(spec: str) -> int:
    """``fbank`` or ``fbank?n_mels=N`` -> N."""
    name, _, query = spec.partition("?")
    if name != PREFIX:
        raise ValueError(f"upstream spec '{spec}' is not 'fbank[?n_mels=N]'")
    n_mels = 80
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise ValueError(f"upstream spec '{spec}': expected key=value pairs joined by '&'") from None
    for key, value in pairs:
        if key != "n_mels":
            raise ValueError(f"upstream spec '{spec}': unknown key '{key}' (known: n_mels)")
        if not value.isdigit() or not 1 <= int(value) <= 201:
            raise ValueError(f"upstream spec '{spec}': n_mels must be an integer in 1..201 "
                             f"(a 400-point FFT has 201 bins), got '{value}'")
        n_mels = int(value)
    return n_mels


class FbankUpstream(AbsUpstream):
    """h_0 = log-mel filterbanks (batch, frames, n_mels); ``num_layers`` is 0. It computes in
    float32 whatever ``dtype`` asks (the FFT has no bfloat16 kernel; the cost is negligible)."""

    @typechecked
    def __init__(self, n_mels: int = 80, *, dtype: str = "float32", normalize: str = "none"):
        module = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP,
            n_mels=n_mels, center=False, power=2.0)
        del dtype  # see the class docstring
        super().__init__(module, num_layers=0, hidden_size=n_mels, cnn_channels=n_mels,
                         downsample_rate=HOP, layer_norm_first=False,
                         source=f"{PREFIX}?n_mels={n_mels}", dtype="float32", normalize=normalize)

    @property
    def device(self) -> torch.device:  # no parameters: the mel matrix buffer says where it is
        return next(self._module.buffers()).device

    def _cnn(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        spec = self._module(wavs.float())  # (batch, n_mels, frames)
        feats = torch.log(spec.clamp_min(LOG_FLOOR)).transpose(1, 2)
        frame_lengths = torch.div(lengths - WINDOW, HOP, rounding_mode="floor") + 1
        return feats, frame_lengths.long()

    def _states_from_cnn(self, feats: torch.Tensor, frame_lengths: torch.Tensor,
                         num_layers: int) -> List[torch.Tensor]:
        return [feats]


@typechecked
def load_fbank_upstream(spec: str, *, dtype: str = "float32", normalize: str = "none") -> FbankUpstream:
    return FbankUpstream(parse_fbank_spec(spec), dtype=dtype, normalize=normalize)
