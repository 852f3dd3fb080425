"""The wav2vec2 CNN feature encoder run so that padding cannot change valid frames.

The first block of a group-norm CNN (HuBERT / wav2vec 2.0 Base, extractor_mode "default")
normalises each channel over *time*; fairseq, transformers and torchaudio include the padded
samples in those statistics, so an utterance's states depend on the batch it is padded into.
Here the statistics are taken over the valid frames only (in float32, as fairseq's
Fp32GroupNorm does), which gives each utterance exactly its states alone. The convolutions
have no padding, so a valid output frame only reads valid input; per-frame LayerNorms are
padding-safe as they are.

Works on the blocks of torchaudio's FeatureExtractor and of ESPnet's CNNFrontend: modules
with ``conv``, ``layer_norm`` (None, nn.GroupNorm or a per-frame norm), ``kernel_size`` and
``stride``.
"""

from typing import Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet2_stacking.core.frames import WINDOW, num_frames


def conv_shapes(blocks: Iterable[torch.nn.Module]) -> List[Tuple[int, int]]:
    """(kernel, stride) of each block."""
    return [(int(b.kernel_size), int(b.stride)) for b in blocks]


def frame_lengths(shapes: Sequence[Tuple[int, int]], lengths: torch.Tensor) -> torch.Tensor:
    """Output frames of a stack of unpadded convolutions for ``lengths`` input samples."""
    for kernel, stride in shapes:
        lengths = torch.clamp(torch.div(lengths - kernel, stride, rounding_mode="floor") + 1, min=0)
    return lengths


def check_frame_rule(shapes: Sequence[Tuple[int, int]], source: str) -> int:
    """Check that the CNN gives num_frames(n) frames for n samples; returns its hop."""
    hop = 1
    for _, stride in shapes:
        hop *= stride
    probe = [WINDOW - 1, WINDOW, 2 * WINDOW, 16000, 16000 + hop - 1, 16000 + hop, 123457]
    got = frame_lengths(shapes, torch.tensor(probe)).tolist()
    want = [num_frames(n) for n in probe]
    if got != want:
        raise ValueError(
            f"{source}: the CNN (kernel, stride) = {list(shapes)} gives {got} frames for "
            f"{probe} samples, not the wav2vec2 rule's {want} (1 + (n - 400) // 320)"
        )
    return hop


def normalize_waveforms(wavs: torch.Tensor, lengths: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit variance over each utterance's valid samples (float32); pads stay 0."""
    valid = (torch.arange(wavs.size(1), device=wavs.device)[None, :] < lengths[:, None]).float()
    x = wavs.float() * valid
    n = lengths[:, None].float()
    mean = x.sum(1, keepdim=True) / n
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (x - mean) * torch.rsqrt(var + eps) * valid


def _masked_group_norm(
    x: torch.Tensor, valid: torch.Tensor, norm: torch.nn.GroupNorm
) -> torch.Tensor:
    """GroupNorm with one channel per group, statistics over valid frames. x: (B, C, T)."""
    if norm.num_groups != norm.num_channels:
        raise ValueError(
            f"GroupNorm with {norm.num_groups} groups of {norm.num_channels} channels: only "
            "one channel per group (the wav2vec2 CNN) is supported"
        )
    m = valid[:, None, :].float()
    xf = x.float()
    n = m.sum(-1, keepdim=True)
    mean = (xf * m).sum(-1, keepdim=True) / n
    var = (((xf - mean) * m) ** 2).sum(-1, keepdim=True) / n
    y = (xf - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        y = y * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return y.to(x.dtype)


def conv_features(
    blocks: Iterable[torch.nn.Module], wavs: torch.Tensor, lengths: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch, samples) waveforms -> (batch, frames, channels) features and frame lengths."""
    x = wavs.unsqueeze(1)
    for block in blocks:
        x = block.conv(x)
        lengths = frame_lengths([(int(block.kernel_size), int(block.stride))], lengths)
        if isinstance(block.layer_norm, torch.nn.GroupNorm):
            valid = torch.arange(x.size(-1), device=x.device)[None, :] < lengths[:, None]
            x = _masked_group_norm(x, valid, block.layer_norm)
        elif block.layer_norm is not None:
            x = block.layer_norm(x)
        x = F.gelu(x)
    return x.transpose(1, 2), lengths


def grouped_conv_guard(x: torch.Tensor):
    """Context for a grouped convolution on ``x``: oneDNN off for low precision on CPU.

    With torch 2.14 on AMX CPUs, oneDNN's bfloat16 grouped conv1d returns garbage (relative
    error ~1 against float32; the positional convolution of every wav2vec2-family model is
    grouped). ATen's own kernel is right, so low-precision CPU runs take it.
    """
    low_cpu = x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)
    return torch.backends.mkldnn.flags(enabled=not low_cpu)
