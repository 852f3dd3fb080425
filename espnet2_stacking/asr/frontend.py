"""A frozen speech SSL upstream as a frontend of ESPnet's ASR task (SUPERB style).

Registered as ``stacking_upstream`` (see :mod:`espnet2_stacking.tasks.register`). The upstream is
anything :func:`espnet2_stacking.upstreams.load_upstream` reads: an exported student
(``exp/student_<tag>/model.pth``, an ESPnet SSL-task model), the teacher itself (a fairseq
``.pt``, a Hugging Face dir, ``random:hubert?...``) or a random-init student export. The
frontend returns either a learnable softmax-weighted sum of h_0..h_N (weights zero-initialised,
i.e. the plain mean at the start, as SUPERB's featurizer) or one chosen state h_k.

The upstream is an :class:`~espnet2_stacking.upstreams.AbsUpstream`, deliberately not an
``nn.Module``: it is frozen (never in ``parameters()``, so no optimizer sees it and ESPnet's
``freeze_param`` is not needed), in eval mode whatever ``.train()`` says, not in
``state_dict()`` (ASR checkpoints hold only the weighted-sum weights; the upstream is re-read
from ``upstream`` when a checkpoint is loaded), and not moved by ``.to()``: ``forward`` moves
it to the input's device itself.

Example (YAML of an ASR config)::

    frontend: stacking_upstream
    frontend_conf:
        upstream: exp/student_interleaved_eql/model.pth
        fs: 16k
        layer: null          # null: weighted sum over h_0..h_N; k: h_k alone

or on the command line ``--frontend_conf upstream=random:hubert?layers=4&dim=32``.
"""

import logging
from typing import List, Optional, Tuple, Union

import humanfriendly
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.espnet_ssl import Featureizer
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.upstreams.load import load_upstream

logger = logging.getLogger(__name__)


@typechecked
def split_states(rows: torch.Tensor, num_states: int) -> List[torch.Tensor]:
    """(batch, frames, num_states * D) -> [h_0, ..., h_{num_states - 1}], each (batch, frames, D)."""
    if rows.dim() != 3 or rows.size(-1) % num_states:
        raise ValueError(
            f"dumped upstream states: expected (batch, frames, {num_states} x D), got "
            f"{tuple(rows.shape)}")
    return list(rows.unflatten(-1, (num_states, rows.size(-1) // num_states)).unbind(-2))


class StackingUpstreamFrontend(AbsFrontend):
    """Hidden states of a frozen upstream as ASR features.

    Args:
        upstream: a teacher spec for ``load_upstream`` (a path or ``random:...``).
        fs: the sampling rate of the input (int or e.g. "16k"); must be 16 kHz.
        layer: None for the weighted sum over h_0..h_num_layers, or k to return h_k only.
        num_layers: the deepest state used (default: all the upstream has); deeper layers
            are not run.
        upstream_dtype: what the upstream computes in (float32, bfloat16, float16); the
            features are float32 whatever it is.
        upstream_normalize: "none" or "layer_norm" (per frame, no affine) on every state
            before the sum, e.g. for pre-LN upstreams whose state scale grows with depth.
            (Not called ``normalize``: ESPnet's --print_config hides frontend options that
            share a name with a top-level option.)
        input: "waveform" (the upstream runs on the audio) or "states": the input rows are
            the upstream's h_0..h_L side by side, dumped once by
            ``espnet2_stacking.bin.dump_upstream_states`` with the same upstream, dtype and
            normalisation (the recipe's ``--downstream_feats dump``); the upstream is then
            read for its shape only and never run.

    Shapes: ``forward(speech (batch, samples), lengths (batch,))`` ->
    ``(feats (batch, frames, hidden_size), feats_lengths (batch,))``, 50 frames/s.

    Example::

        frontend = StackingUpstreamFrontend(upstream="random:hubert?layers=2&dim=32")
        feats, feats_lengths = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        # feats: (2, 49, 32), feats_lengths: tensor([49, 24])
    """

    @typechecked
    def __init__(
        self,
        upstream: str,
        fs: Union[int, str] = SAMPLE_RATE,
        layer: Optional[int] = None,
        num_layers: Optional[int] = None,
        upstream_dtype: str = "float32",
        upstream_normalize: str = "none",
        input: str = "waveform",
    ):
        super().__init__()
        if input not in ("waveform", "states"):
            raise ValueError(
                f"stacking_upstream frontend: input must be 'waveform' or 'states', got '{input}'")
        self.input = input
        if isinstance(fs, str):
            fs = humanfriendly.parse_size(fs)
        if fs != SAMPLE_RATE:
            raise ValueError(
                f"stacking_upstream frontend: fs={fs} but the upstream '{upstream}' takes "
                f"{SAMPLE_RATE} Hz audio; resample the data to 16 kHz"
            )
        self.upstream_spec = upstream
        self.upstream_dtype = upstream_dtype
        self.upstream_normalize = upstream_normalize
        self.upstream = self._load_upstream()
        total = self.upstream.num_layers
        if num_layers is not None and not 0 <= num_layers <= total:
            raise ValueError(
                f"stacking_upstream frontend: num_layers={num_layers} is not in 0..{total} "
                f"(the upstream '{upstream}' has {total} layers)"
            )
        depth = total if num_layers is None else num_layers
        if layer is not None:
            if not 0 <= layer <= depth:
                raise ValueError(
                    f"stacking_upstream frontend: layer={layer} is not in 0..{depth} "
                    f"(the states h_0..h_{depth} of '{upstream}')"
                )
            depth = layer  # layers above the chosen one are not needed
        self.layer = layer
        self.num_layers = depth
        # ESPnet's own SUPERB-style featurizer (zero-initialised weights, softmax): one copy
        # of that code in the toolkit is enough.
        self.featurizer = Featureizer(depth + 1) if layer is None else None

    def _load_upstream(self):
        return load_upstream(self.upstream_spec, dtype=self.upstream_dtype,
                            normalize=self.upstream_normalize)

    def output_size(self) -> int:
        return self.upstream.hidden_size

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) waveforms, or with ``input: states`` (batch, frames, (L + 1) * D)
        dumped states -> (batch, frames, hidden_size) float32 features."""
        if self.input == "states":
            num_states = self.upstream.num_layers + 1
            width = num_states * self.upstream.hidden_size
            if input.dim() != 3 or input.size(-1) != width:
                raise ValueError(
                    f"stacking_upstream frontend (input: states): expected dumped states "
                    f"(batch, frames, {width}) = {num_states} states x "
                    f"{self.upstream.hidden_size} of '{self.upstream_spec}', got "
                    f"{tuple(input.shape)}: dumped from another upstream?")
            # the dump holds every state; num_layers / layer use the first ones, as online
            states = split_states(input.float(), num_states)[: self.num_layers + 1]
            feats_lengths = input_lengths
        else:
            self.upstream.to(input.device)  # not a submodule: .to() on the model misses it
            states, feats_lengths = self.upstream.extract_features(
                input.float(), input_lengths, num_layers=self.num_layers
            )
        if self.featurizer is None:
            feats = states[self.layer]
        else:
            feats = self.featurizer(states)
        return feats, feats_lengths

    def reload_pretrained_parameters(self) -> None:
        """Re-read the upstream and zero the layer weights (called after ESPnet's ``init``).

        ``init`` never reaches the upstream (not a submodule) and leaves 1-D weights alone,
        but a caller may have touched either: both go back to their pretrained / initial
        state, so the sum starts as the plain mean again.
        """
        device = self.upstream.device
        self.upstream = self._load_upstream().to(device)
        if self.featurizer is not None:
            with torch.no_grad():
                self.featurizer.weights.zero_()
        logger.info(f"stacking_upstream: reloaded the upstream {self.upstream_spec}")

    def extra_repr(self) -> str:
        return (f"upstream={self.upstream!r}, layer={self.layer}, "
                f"num_layers={self.num_layers}, input={self.input}")
