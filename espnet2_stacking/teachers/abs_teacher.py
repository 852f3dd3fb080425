"""One interface over every teacher: waveforms in, hidden states h_0..h_L out.

h_0 is the transformer input (after the CNN, the feature projection and the positional
convolution), h_k the output of layer k: the convention of s3prl, Hugging Face and torchaudio.
A teacher is always frozen, in eval mode and run without autograd. It is deliberately not an
nn.Module: a student that keeps one as an attribute does not register it, so it never lands in
the student's state_dict, its optimizer or its checkpoints.
"""

from abc import ABC, abstractmethod
from typing import List, Optional, Sequence, Tuple

import torch

WINDOW = 400  # samples of the wav2vec2 CNN's receptive field
HOP = 320     # samples per frame
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def num_frames(num_samples: int) -> int:
    """Frames the wav2vec2 CNN gives for ``num_samples`` samples (0 below one window).
    Teachers from different fairseq versions may differ by one: trim to the shorter."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // HOP


def num_samples_for(frames: int) -> int:
    """The fewest samples that give ``frames`` frames."""
    return 0 if frames <= 0 else HOP * (frames - 1) + WINDOW


def check_waveforms(wavs: torch.Tensor, lengths: torch.Tensor) -> None:
    if wavs.dim() != 2 or not wavs.is_floating_point():
        raise ValueError(f"waveforms must be a float (batch, samples) tensor, got {tuple(wavs.shape)} {wavs.dtype}")
    if lengths.dim() != 1 or lengths.size(0) != wavs.size(0):
        raise ValueError(f"lengths must be (batch,) = ({wavs.size(0)},), got {tuple(lengths.shape)}")
    if int(lengths.max()) > wavs.size(1):
        raise ValueError(f"a length ({int(lengths.max())}) exceeds the padded width {wavs.size(1)}")
    short = (lengths < WINDOW).nonzero().flatten().tolist()
    if short:
        raise ValueError(
            f"batch items {short} are shorter than one teacher frame ({WINDOW} samples): "
            f"lengths {[int(lengths[i]) for i in short]}"
        )


class AbsTeacher(ABC):
    """A frozen teacher. Subclasses set ``num_layers``, ``hidden_size``; 16 kHz, 320x."""

    num_layers: int
    hidden_size: int
    sample_rate: int = 16000
    downsample_rate: int = HOP
    #: True for pre-LN teachers (HuBERT/WavLM Large): their states are raw residual streams
    #: whose scale grows with depth, the final LayerNorm left out (see ``normalize``).
    layer_norm_first: bool = False

    def __init__(self, dtype: str = "float32", normalize: str = "none"):
        if dtype not in DTYPES:
            raise ValueError(f"teacher dtype must be one of {list(DTYPES)}, got '{dtype}'")
        if normalize not in ("none", "layer_norm"):
            raise ValueError(f"normalize must be 'none' or 'layer_norm', got '{normalize}'")
        self.dtype = DTYPES[dtype]
        self.normalize = normalize
        self.device = torch.device("cpu")

    @abstractmethod
    def _hidden_states(self, wavs: torch.Tensor, lengths: torch.Tensor,
                       num_layers: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """h_0..h_num_layers and frame lengths, computed in self.dtype."""

    @abstractmethod
    def _modules(self) -> Sequence[torch.nn.Module]:
        """The torch modules holding the teacher's weights."""

    def freeze(self) -> "AbsTeacher":
        for module in self._modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
        return self

    def to(self, device) -> "AbsTeacher":
        device = torch.device(device)
        if device != self.device:
            for module in self._modules():
                module.to(device=device, dtype=self.dtype)
            self.device = device
        return self

    def train(self, mode: bool = True) -> "AbsTeacher":
        """A teacher never trains: kept for code that calls train() on everything."""
        return self.freeze()

    def eval(self) -> "AbsTeacher":
        return self.freeze()

    def extract_features(self, wavs: torch.Tensor, lengths: torch.Tensor,
                         num_layers: Optional[int] = None) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Hidden states of a batch.

        Args:
            wavs: (batch, samples) float waveforms at 16 kHz, zero-padded.
            lengths: (batch,) valid samples.
            num_layers: compute up to h_num_layers only (default: all L layers).
        Returns:
            ([h_0, ..., h_num_layers], each (batch, frames, hidden_size) float32), frames (batch,).
        """
        check_waveforms(wavs, lengths)
        num_layers = self.num_layers if num_layers is None else num_layers
        if not 0 <= num_layers <= self.num_layers:
            raise ValueError(f"num_layers must be in 0..{self.num_layers}, got {num_layers}")
        # the trainer may have called .train() on a student holding us: stay in eval
        for module in self._modules():
            if module.training:
                module.eval()
        with torch.inference_mode():
            states, frames = self._hidden_states(
                wavs.to(self.device, self.dtype), lengths.to(self.device), num_layers
            )
            states = [h.float() for h in states]
            if self.normalize == "layer_norm":
                states = [torch.nn.functional.layer_norm(h, h.shape[-1:]) for h in states]
        # leave inference mode: callers may use them as targets in autograd graphs
        return [h.clone() for h in states], frames.clone()


def select_states(states: Sequence[torch.Tensor], layers: Sequence[int]) -> List[torch.Tensor]:
    """Pick teacher states by index, e.g. layers [4, 8, 12]."""
    return [states[t] for t in layers]
