"""Collate that crops audio and dumped teacher frames together, frame-aligned.

Student and teacher share the wav2vec2 CNN (400-sample window, 320-sample hop), so frame f
covers samples [320 f, 320 f + 400). A crop of F frames starting at frame f0 takes samples
[320 f0, 320 f0 + 320 (F - 1) + 400) and teacher frames [f0, f0 + F): the student's CNN then
yields exactly the F frames the targets describe. ESPnet's CommonCollateFn pads keys
independently and HuBERTCollateFn drops every key but speech and text, hence this collate.
"""

from typing import Collection, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from typeguard import typechecked

from espnet2_stacking.core.frames import HOP, WINDOW, num_frames, num_samples_for
from espnet2_stacking.data.cropped_npy import frames_of


class DistillCollateFn:
    """Batch speech (and dumped teacher states) into padded tensors, cropping both alike.

    Args:
        target_names: data names of dumped per-frame arrays: teacher states, e.g.
            ["target_4", "target_12"] (none when the teacher runs online), and the teacher's
            CNN output ("cnn_feats"); all are cropped alike.
        crop_mode: "random" crops each utterance longer than ``max_samples`` at a random
            frame; "shortest" crops every utterance to the shortest one of the batch (no
            padding at all, as DPHuBERT batches), also at random offsets; "none" keeps whole
            utterances (validation).
        max_samples: the longest crop in samples (rounded down to whole frames), or None.
        max_frame_mismatch: teachers and students may disagree by a frame (fairseq versions);
            a larger disagreement between an utterance's audio and its targets is an error.

    Returns from __call__: (utt_ids, batch) with batch keys ``speech`` (B, N) float32,
    ``speech_lengths`` (B,), and per target name ``<name>`` (B, F, D) in the dtype it was
    stored in (float16 from the dump, or the int8 / uint8 codes of an int8 / pq dump, read by
    crop: data type ``cropped_npy``; the model decodes codes and computes in float32 on the
    device) and ``<name>_lengths`` (B,) holding the frames,
    equal for every target of an utterance.
    """

    @typechecked
    def __init__(
        self,
        target_names: Sequence[str] = (),
        crop_mode: Literal["random", "shortest", "none"] = "random",
        max_samples: Optional[int] = None,
        max_frame_mismatch: int = 1,
    ):
        if max_samples is not None and max_samples < WINDOW:
            raise ValueError(f"max_samples must be >= {WINDOW} (one frame), got {max_samples}")
        self.target_names = list(target_names)
        self.crop_mode = crop_mode
        self.max_frames = None if max_samples is None else num_frames(max_samples)
        self.max_frame_mismatch = max_frame_mismatch

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(target_names={self.target_names}, "
            f"crop_mode={self.crop_mode}, max_frames={self.max_frames})"
        )

    def _frames_of(self, uttid: str, item: Dict[str, np.ndarray]) -> int:
        """Usable frames of one utterance: its audio's, trimmed to the shortest target."""
        speech = item["speech"]
        if speech.ndim != 1:
            raise ValueError(
                f"utterance '{uttid}': speech must be mono (samples,), got shape {speech.shape}"
            )
        frames = num_frames(len(speech))
        if frames == 0:
            raise ValueError(
                f"utterance '{uttid}': {len(speech)} samples is shorter than one frame "
                f"({WINDOW} samples)"
            )
        for name in self.target_names:
            if name not in item:
                raise KeyError(f"utterance '{uttid}': no '{name}' in the batch (dump missing?)")
            target = frames_of(item[name])
            if target.ndim != 2:
                raise ValueError(
                    f"utterance '{uttid}': '{name}' must be (frames, dim), got {target.shape}"
                )
            if abs(target.shape[0] - num_frames(len(speech))) > self.max_frame_mismatch:
                raise ValueError(
                    f"utterance '{uttid}': '{name}' has {target.shape[0]} frames but its "
                    f"{len(speech)} samples give {num_frames(len(speech))}; the dump does not "
                    "belong to this audio (re-run the teacher dump)"
                )
            frames = min(frames, target.shape[0])
        return frames

    def __call__(
        self, data: Collection[Tuple[str, Dict[str, np.ndarray]]]
    ) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uttids = [u for u, _ in data]
        items = [d for _, d in data]
        frames = [self._frames_of(u, d) for u, d in zip(uttids, items)]
        if self.crop_mode == "none":
            keep = frames
        elif self.crop_mode == "shortest":
            keep = [min(frames)] * len(frames)
        else:
            keep = list(frames)
        if self.max_frames is not None and self.crop_mode != "none":
            keep = [min(k, self.max_frames) for k in keep]
        # torch's RNG: ESPnet seeds it per epoch, and DataLoader workers get derived seeds,
        # so crops are reproducible and a resumed epoch crops as the first run did.
        starts = [
            int(torch.randint(0, f - k + 1, ()).item()) if f > k else 0
            for f, k in zip(frames, keep)
        ]
        batch: Dict[str, torch.Tensor] = {}
        sample_lens = []
        speech = []
        for item, f, k, s in zip(items, frames, keep, starts):
            wav = np.asarray(item["speech"], dtype=np.float32)
            if k == f and self.crop_mode == "none":
                # whole utterance: keep the samples past the last frame too
                piece = wav
            else:
                piece = wav[HOP * s : HOP * s + num_samples_for(k)]
            speech.append(torch.from_numpy(np.ascontiguousarray(piece)))
            sample_lens.append(len(piece))
        batch["speech"] = torch.nn.utils.rnn.pad_sequence(speech, batch_first=True)
        batch["speech_lengths"] = torch.tensor(sample_lens, dtype=torch.long)
        for name in self.target_names:
            # only the crop's rows are read (cropped_npy), and kept in their stored dtype
            pieces = [
                torch.from_numpy(np.ascontiguousarray(frames_of(item[name])[s : s + k]))
                for item, k, s in zip(items, keep, starts)
            ]
            batch[name] = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
            batch[f"{name}_lengths"] = torch.tensor(keep, dtype=torch.long)
        return uttids, batch
