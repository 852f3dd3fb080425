"""One utterance of a data dir, its audio, and length-bucketed batches of utterances."""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import soundfile


@dataclass(frozen=True)
class Utterance:
    """One row of a data dir: id, audio path and length; speaker and transcript where known.

    Data preparation fills all five fields (``write_kaldi_dir`` needs them); readers of audio
    (the teacher dump, labels, probes) need only the first three.
    """

    utt_id: str
    path: str
    num_samples: int
    speaker: Optional[str] = None
    text: Optional[str] = None


def load_audio(utt: Utterance, sample_rate: int) -> np.ndarray:
    try:
        wav, sr = soundfile.read(utt.path, dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises several types for missing / corrupt files
        raise RuntimeError(f"utterance '{utt.utt_id}': cannot read {utt.path}: {e}") from e
    if sr != sample_rate:
        raise ValueError(
            f"utterance '{utt.utt_id}': {utt.path} is {sr} Hz; the teacher needs {sample_rate} Hz"
        )
    if wav.ndim != 1:
        raise ValueError(f"utterance '{utt.utt_id}': {utt.path} has {wav.shape[1]} channels")
    if len(wav) != utt.num_samples:
        raise ValueError(
            f"utterance '{utt.utt_id}': {utt.path} has {len(wav)} samples but "
            f"utt2num_samples says {utt.num_samples}"
        )
    return wav


def padded_audio(batch: Sequence[Utterance], sample_rate: int):
    """(padded (B, samples) float32 tensor, lengths (B,)) of a batch's audio, for an
    upstream's ``extract_features``."""
    import torch  # here: data preparation reads audio without loading torch

    wavs = [torch.from_numpy(load_audio(u, sample_rate)) for u in batch]
    lengths = torch.tensor([len(w) for w in wavs])
    return torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths


def batches_by_length(utts: Sequence[Utterance], max_batch_samples: int) -> List[List[Utterance]]:
    """Group length-sorted utterances so that batch size x longest stays within budget."""
    ordered = sorted(utts, key=lambda u: u.num_samples, reverse=True)
    out: List[List[Utterance]] = []
    for u in ordered:
        if out and (len(out[-1]) + 1) * out[-1][0].num_samples <= max_batch_samples:
            out[-1].append(u)
        else:
            out.append([u])
    return out
