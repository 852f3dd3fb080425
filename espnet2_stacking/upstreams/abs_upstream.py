"""The teacher interface: a frozen speech SSL model that returns its hidden states.

Layer convention (s3prl, Hugging Face and torchaudio index layers so):
    h_0  the transformer input: after the CNN, the feature projection and the positional
         convolution (and, in post-LN models, the encoder LayerNorm that precedes layer 1);
    h_k  the output of transformer layer k, k = 1..L, *before* any final LayerNorm.
In pre-LN teachers (``layer_norm_first``, e.g. HuBERT / WavLM Large, ESPnet SSL models with
``normalize_before``) the encoder applies one more LayerNorm after layer L; no returned state
includes it (torchaudio's ``extract_features`` and transformers >= 5 ``hidden_states`` give the
same; s3prl and transformers 4.x put the normalised output last instead). Such states grow in
scale with depth: ``normalize="layer_norm"`` normalises every returned frame (no affine).

Frames: ``num_frames(n) = 1 + (n - 400) // 320`` for n >= 400 samples, else 0 (the wav2vec2
CNN). Every teacher here is checked to follow it; other implementations (some fairseq
versions) can give one frame less: trim teacher and student to the shorter.

Online use inside training (the same interface as the frame dump)::

    teacher = load_upstream("/models/hubert_base_ls960.pt", dtype="bfloat16", device="cuda")
    model.teacher = teacher                     # a plain attribute: see below
    states, frame_lengths = teacher.extract_features(speech, speech_lengths, num_layers=12)
    targets = select_states(states, [4, 8, 12])  # (batch, frames, dim) each

A teacher is deliberately *not* an ``nn.Module``: assigned to an attribute of a student
module it stays a plain reference, so it is not in the student's ``state_dict()`` (no teacher
weights in any checkpoint), not in ``parameters()`` (not in the optimizer), not switched by
``student.train()`` and not moved by ``student.to()``: call ``teacher.to(device)`` yourself
(a no-op when it is already there). Its weights never require grad; it always runs in eval
mode under ``torch.no_grad()`` (not ``inference_mode``: inference tensors could not be saved
for the student's backward) with the caller's autocast switched off, and ``teacher.train()``
leaves it in eval mode. It computes in ``dtype`` (float32, bfloat16 or float16) and returns
float32 states. With several GPUs, give every process its own teacher (DDP), not one teacher
shared by DataParallel replicas.
"""

import logging
from abc import ABC, abstractmethod
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from espnet2_stacking.core.frames import HOP, SAMPLE_RATE, WINDOW

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
NORMALIZATIONS = ("none", "layer_norm")

logger = logging.getLogger(__name__)


@typechecked
def select_states(states: Sequence[torch.Tensor], layers: Sequence[int]) -> List[torch.Tensor]:
    """The states ``layers`` (indices into h_0..h_k) of an ``extract_features`` result."""
    for t in layers:
        if not 0 <= t < len(states):
            raise IndexError(
                f"hidden state {t} was not computed: the result holds h_0..h_{len(states) - 1} "
                f"(pass num_layers >= {t} to extract_features)"
            )
    return [states[t] for t in layers]


def padding_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch, frames) bool, True at padded frames."""
    return torch.arange(frames, device=lengths.device)[None, :] >= lengths[:, None]


class AbsUpstream(ABC):
    """A frozen teacher returning hidden states h_0..h_L; see the module docstring.

    Attributes:
        num_layers: L, the number of transformer layers.
        hidden_size: D, the width of every hidden state.
        cnn_channels: the width of the CNN's output (``extract_features_and_cnn``).
        downsample_rate: samples per frame (320).
        sample_rate: the rate the teacher expects (16000).
        layer_norm_first: True for pre-LN teachers.
        dtype: the dtype the teacher computes in ("float32", "bfloat16", "float16"); states
            are returned in float32 whatever it is.
        normalize: "none" or "layer_norm" (per-frame, no affine) applied to returned states.
        source: where the weights came from (a path or a random: spec), for messages.
    """

    sample_rate: int = SAMPLE_RATE

    @typechecked
    def __init__(
        self,
        module: torch.nn.Module,
        *,
        num_layers: int,
        hidden_size: int,
        cnn_channels: int,
        downsample_rate: int,
        layer_norm_first: bool,
        source: str,
        dtype: str = "float32",
        normalize: str = "none",
    ):
        if dtype not in DTYPES:
            raise ValueError(f"{source}: dtype '{dtype}' is not one of {tuple(DTYPES)}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"{source}: normalize '{normalize}' is not one of {NORMALIZATIONS}")
        if downsample_rate != HOP:
            raise ValueError(
                f"{source}: the teacher's CNN downsamples by {downsample_rate}, not {HOP} "
                f"(the wav2vec2 rate every part of this toolkit assumes)"
            )
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.cnn_channels = cnn_channels
        self.downsample_rate = downsample_rate
        self.layer_norm_first = layer_norm_first
        self.source = source
        self.dtype = dtype
        self.normalize = normalize
        module.eval()
        module.requires_grad_(False)
        self._module = module.to(DTYPES[dtype])
        if layer_norm_first:
            logger.info(
                f"{source} is a pre-LN teacher: h_1..h_{num_layers} are layer outputs without "
                "the encoder's final LayerNorm (which its last_hidden_state has), so their "
                f"scale grows with depth; normalize='{normalize}'"
            )

    # ---- the contract: a teacher is its CNN, then the rest --------------------------
    @abstractmethod
    def _cnn(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CNN's output as a student frontend holding the teacher's CNN gives it
        (``cnn_state_dict``: before any feature projection), (batch, frames, channels), and
        the (batch,) frame lengths, for checked inputs on the teacher's device with
        ``wavs.size(1) == lengths.max()``. Padded frames may hold anything."""
        raise NotImplementedError

    @abstractmethod
    def _states_from_cnn(
        self, feats: torch.Tensor, frame_lengths: torch.Tensor, num_layers: int
    ) -> List[torch.Tensor]:
        """h_0..h_num_layers, each (batch, frames, dim) in any float dtype, from ``_cnn``'s
        output. Padded frames may hold anything."""
        raise NotImplementedError

    @typechecked
    def extract_features(
        self, wavs: torch.Tensor, lengths: torch.Tensor, num_layers: Optional[int] = None
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Hidden states h_0..h_num_layers of a padded batch of waveforms.

        Args:
            wavs: (batch, samples) float waveforms at ``sample_rate``, zero-padded.
            lengths: (batch,) integer valid samples per utterance (400 <= n <= samples).
            num_layers: the deepest state needed (0..L; default L): later layers are not run.

        Returns:
            num_layers + 1 float32 tensors (batch, frames, hidden_size), frames
            = num_frames(lengths.max()), zero at padded frames; and (batch,) long frame
            lengths on the same device. A padded utterance gets exactly the states it gets
            alone.
        """
        states, _, frame_lengths = self.extract_features_and_cnn(wavs, lengths, num_layers)
        return states, frame_lengths

    @typechecked
    def extract_features_and_cnn(
        self, wavs: torch.Tensor, lengths: torch.Tensor, num_layers: Optional[int] = None
    ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``extract_features`` and, from the same pass, the CNN's output (batch, frames,
        channels) float32, zero at padded frames, never normalised: what the student's
        frontend computes when it holds this teacher's CNN (``cnn_state_dict``), frozen.
        With a group-norm CNN, the channel statistics are each utterance's own, as in the
        states."""
        depth = self.num_layers if num_layers is None else num_layers
        self._check_inputs(wavs, lengths, depth)
        if self._module.training:  # someone reached into the module: undo it
            self._module.eval()
        lengths = lengths.to(wavs.device)
        wavs = wavs[:, : int(lengths.max())]
        # The caller's autocast (ESPnet's --use_amp) must not override the teacher's dtype.
        with torch.no_grad(), torch.autocast(device_type=wavs.device.type, enabled=False):
            cnn, frame_lengths = self._cnn(wavs, lengths)
            pad = padding_mask(frame_lengths, cnn.size(1)).unsqueeze(-1)
            cnn = cnn.masked_fill(pad, 0.0)
            states = self._states_from_cnn(cnn, frame_lengths, depth)
            out = []
            for h in states:
                h = h.float()
                if self.normalize == "layer_norm":
                    h = F.layer_norm(h, (h.size(-1),))
                out.append(h.masked_fill(pad, 0.0))
        return out, cnn.float(), frame_lengths

    def _check_inputs(self, wavs: torch.Tensor, lengths: torch.Tensor, depth: int) -> None:
        if wavs.dim() != 2 or not wavs.is_floating_point():
            raise ValueError(
                f"teacher {self.source}: wavs must be a 2-D (batch, samples) float tensor, "
                f"got {wavs.dim()}-D {wavs.dtype}"
            )
        if lengths.dim() != 1 or lengths.size(0) != wavs.size(0):
            raise ValueError(
                f"teacher {self.source}: lengths must be (batch,) = ({wavs.size(0)},), "
                f"got {tuple(lengths.shape)}"
            )
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(
                f"teacher {self.source}: lengths must be integers, got {lengths.dtype}"
            )
        if wavs.device != self.device:
            raise ValueError(
                f"teacher {self.source}: wavs are on {wavs.device} but the teacher is on "
                f"{self.device}: call teacher.to(device) first"
            )
        if not 0 <= depth <= self.num_layers:
            raise ValueError(
                f"teacher {self.source}: num_layers={depth} is not in 0..{self.num_layers}"
            )
        for i, n in enumerate(lengths.tolist()):
            if n > wavs.size(1):
                raise ValueError(
                    f"teacher {self.source}: utterance {i} of the batch has length {n} but "
                    f"the batch holds only {wavs.size(1)} samples"
                )
            if n < WINDOW:
                raise ValueError(
                    f"teacher {self.source}: utterance {i} of the batch has {n} samples, "
                    f"shorter than one frame ({WINDOW} samples)"
                )

    # ---- a frozen module's housekeeping ---------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self._module.parameters()).device

    def to(self, device: Union[str, torch.device]) -> "AbsUpstream":
        """Move the weights to ``device`` (a no-op when already there); returns self."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" is the current device
            device = torch.device("cuda", torch.cuda.current_device())
        if device != self.device:
            self._module.to(device)
        return self

    def train(self, mode: bool = True) -> "AbsUpstream":
        """A teacher stays in eval mode whatever ``mode`` says (returns self)."""
        self._module.eval()
        return self

    def eval(self) -> "AbsUpstream":
        self._module.eval()
        return self

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The frozen weights (for inspection; never give them to an optimizer)."""
        return self._module.parameters()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, num_layers={self.num_layers}, "
            f"hidden_size={self.hidden_size}, dtype={self.dtype}, normalize={self.normalize}, "
            f"layer_norm_first={self.layer_norm_first}, device={self.device})"
        )
