"""HuBERT targets: k-means of MFCC + deltas (the first iteration) or of a trained upstream's
hidden states (the next ones), one cluster id per CNN frame.

Frames: a 25 ms Hamming window every 20 ms without centring (Kaldi's ``snip_edges``), so an
utterance of n samples gets exactly ``num_frames(n) = 1 + (n - 400) // 320`` frames, the frame
count of the wav2vec2 CNN (and 0 below 400 samples). Zero padding past an utterance's end never
reaches its frames, so a padded batch gives every utterance exactly the features it gets alone.

Features: 13 MFCCs (23 mel bands, log mel energies) with deltas and delta-deltas (39 dims),
standardised with the mean and standard deviation of the training frames (stored with the
centroids, so other sets get the same mapping).

Label dirs (``<labels>/<set>/``): ``text`` (Kaldi text, ``utt c1 c2 ... cT`` with exactly
T = num_frames tokens, checked), ``wav.scp`` and ``utt2num_samples`` of the utterances that got
labels, and ``summary.json``. Utterances shorter than one frame (< 400 samples) cannot have a
label: each is logged, left out of all three files and counted in ``summary.json``
(``skipped_short``). ``summary.json`` is written last: its presence marks a finished set.

Example::

    feats = mfcc_features(read_data_dir(Path("data/train")), nj=2)   # {utt: (T, 39)}
    km = fit_kmeans(feats, num_clusters=64, seed=0)
    write_label_dir(Path("data/dev"), Path("exp/teacher/labels/dev"), km, nj=2)
"""

import json
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torchaudio
from typeguard import typechecked

from espnet2_stacking.core.frames import HOP, SAMPLE_RATE, WINDOW, num_frames
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.audio_check import parallel_imap
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.utterances import Utterance, batches_by_length, load_audio, padded_audio

N_MFCC = 13
N_MELS = 23
FEAT_DIM = 3 * N_MFCC  # MFCC + deltas + delta-deltas
MAX_BATCH_SAMPLES = 60 * SAMPLE_RATE  # padded audio per feature batch
SUMMARY = "summary.json"
TOKENS = "tokens.txt"
UNK = "<unk>"

logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """A label file that does not fit its audio (names the utterance)."""


def _mfcc_transform() -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(
        sample_rate=SAMPLE_RATE,
        n_mfcc=N_MFCC,
        log_mels=True,
        melkwargs=dict(n_fft=WINDOW, win_length=WINDOW, hop_length=HOP, n_mels=N_MELS,
                       center=False, f_min=20.0, window_fn=torch.hamming_window),
    )


def _batch_features(batch: List[Utterance]) -> List[tuple]:
    """(uttid, (T, 39) float32) for one batch of utterances (module level: runs in workers)."""
    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # nj workers share the cores; in the caller's process (nj=1), keep its setting
    wavs = [load_audio(u, SAMPLE_RATE) for u in batch]
    longest = max(len(w) for w in wavs)
    padded = torch.zeros(len(wavs), longest)
    for i, w in enumerate(wavs):
        padded[i, : len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        mfcc = _mfcc_transform()(padded)  # (batch, 13, frames of the longest)
    out = []
    for i, u in enumerate(batch):
        t = num_frames(u.num_samples)
        m = mfcc[i, :, :t]
        d1 = torchaudio.functional.compute_deltas(m)
        d2 = torchaudio.functional.compute_deltas(d1)
        feats = torch.cat([m, d1, d2], dim=0).T.contiguous().numpy().astype(np.float32)
        if feats.shape[0] != t:  # the transform and num_frames disagree: a bug, not bad data
            raise LabelError(
                f"utterance '{u.utt_id}': {feats.shape[0]} MFCC frames for {u.num_samples} "
                f"samples, expected {t}"
            )
        out.append((u.utt_id, feats))
    return out


@typechecked
def split_short(utts: Sequence[Utterance], where: str) -> tuple:
    """(usable, too_short): utterances with and without a frame; logs each short one."""
    usable = [u for u in utts if u.num_samples >= WINDOW]
    short = [u for u in utts if u.num_samples < WINDOW]
    for u in short:
        logger.warning(
            f"{where}: skipping utterance '{u.utt_id}': {u.num_samples} samples is shorter "
            f"than one frame ({WINDOW} samples), so it can have no label"
        )
    return usable, short


@typechecked
def mfcc_features(utts: Sequence[Utterance], nj: int = 1,
                  cluster: Optional[dict] = None) -> Dict[str, np.ndarray]:
    """{uttid: (num_frames, 39) float32} for utterances of >= 400 samples, in batches of
    similar length on ``nj`` processes (on the workers of ``cluster``, a job class of the
    site's parallel config, when it is a cluster)."""
    for u in utts:
        if u.num_samples < WINDOW:
            raise LabelError(
                f"utterance '{u.utt_id}': {u.num_samples} samples, shorter than one frame "
                f"({WINDOW}); drop it first (split_short)"
            )
    batches = batches_by_length(utts, MAX_BATCH_SAMPLES)
    feats: Dict[str, np.ndarray] = {}
    for result in parallel_imap(_batch_features, batches, nj, "mfcc", cluster):
        feats.update(result)
    return feats


@typechecked
def upstream_features(utts: Sequence[Utterance], model, layer: Optional[int] = None
                      ) -> Dict[str, np.ndarray]:
    """{uttid: (num_frames, D) float32}: hidden state ``layer`` (0 = the transformer input) of
    a frozen upstream (an AbsUpstream from ``load_upstream``), the features of HuBERT's later
    iterations (its second clusters layer 6 of 12 of the first model). ``layer`` None: the
    middle state, L // 2."""
    for u in utts:
        if u.num_samples < WINDOW:
            raise LabelError(
                f"utterance '{u.utt_id}': {u.num_samples} samples, shorter than one frame "
                f"({WINDOW}); drop it first (split_short)"
            )
    if layer is None:
        layer = model.num_layers // 2
    if not 0 <= layer <= model.num_layers:
        raise LabelError(f"label layer {layer}: the upstream has states 0..{model.num_layers}")
    feats: Dict[str, np.ndarray] = {}
    for batch in batches_by_length(utts, MAX_BATCH_SAMPLES):
        states, frames = model.extract_features(*padded_audio(batch, model.sample_rate))
        for u, row, n in zip(batch, states[layer].float().cpu(), frames.tolist()):
            feats[u.utt_id] = row[:n].numpy()
    return feats


@dataclass
class KMeansModel:
    """Centroids in the standardised feature space, and the standardisation."""

    centers: np.ndarray  # (K, 39) for MFCCs, (K, D) for an upstream's states
    mean: np.ndarray  # (39,) or (D,)
    std: np.ndarray
    seed: int

    @property
    def num_clusters(self) -> int:
        return int(self.centers.shape[0])

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """(T,) int cluster ids of (T, 39) features: the nearest centroid."""
        x = (feats - self.mean) / self.std
        d = (x * x).sum(1, keepdims=True) - 2 * x @ self.centers.T + (self.centers ** 2).sum(1)
        return d.argmin(1)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, centers=self.centers, mean=self.mean, std=self.std, seed=self.seed)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "KMeansModel":
        z = np.load(path)
        return cls(z["centers"], z["mean"], z["std"], int(z["seed"]))


@typechecked
def fit_kmeans(feats: Dict[str, np.ndarray], num_clusters: int, seed: int = 0,
               max_frames: int = 200000) -> KMeansModel:
    """MiniBatchKMeans on (at most ``max_frames`` randomly chosen) standardised frames."""
    from sklearn.cluster import MiniBatchKMeans

    x = np.concatenate([feats[k] for k in sorted(feats)], axis=0)
    if len(x) < num_clusters:
        raise ValueError(f"{len(x)} training frames cannot make {num_clusters} clusters")
    mean, std = x.mean(0), x.std(0) + 1e-5
    if len(x) > max_frames:
        x = x[np.random.default_rng(seed).choice(len(x), max_frames, replace=False)]
    km = MiniBatchKMeans(n_clusters=num_clusters, random_state=seed, batch_size=10000,
                         n_init=3, max_iter=100, max_no_improvement=20)
    km.fit((x - mean) / std)
    logger.info(f"k-means: {num_clusters} clusters on {len(x)} frames, inertia "
                f"{km.inertia_ / len(x):.3f} per frame")
    return KMeansModel(km.cluster_centers_.astype(np.float32), mean.astype(np.float32),
                       std.astype(np.float32), seed)


@typechecked
def write_token_list(path: Path, num_clusters: int) -> None:
    """``0`` .. ``K-1`` then ``<unk>``, one a line (ESPnet token list, token_type word)."""
    atomic_write_text(path, "".join(f"{i}\n" for i in range(num_clusters)) + f"{UNK}\n")


@typechecked
def read_labels(path: Path) -> Dict[str, List[int]]:
    """{uttid: [cluster ids]} of a label text file."""
    out = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            uttid, *tokens = line.split()
            try:
                out[uttid] = [int(t) for t in tokens]
            except ValueError:
                raise LabelError(f"{path}:{lineno}: utterance '{uttid}' has a non-integer label")
    return out


@typechecked
def verify_labels(label_dir: Path, num_clusters: int) -> Dict[str, int]:
    """Check ``text`` against ``utt2num_samples``: the same utterances, exactly num_frames(n)
    ids in 0..K-1 each; raise LabelError naming the first bad utterance. Returns
    {uttid: frames}."""
    utts = read_data_dir(label_dir)
    labels = read_labels(label_dir / "text")
    missing = sorted(set(u.utt_id for u in utts) - set(labels))
    if missing:
        raise LabelError(f"{label_dir}/text: no labels for utterance '{missing[0]}' "
                         f"({len(missing)} in all)")
    extra = sorted(set(labels) - set(u.utt_id for u in utts))
    if extra:
        raise LabelError(f"{label_dir}/text: utterance '{extra[0]}' is not in wav.scp")
    frames = {}
    for u in utts:
        want, got = num_frames(u.num_samples), labels[u.utt_id]
        if len(got) != want:
            raise LabelError(
                f"{label_dir}/text: utterance '{u.utt_id}' has {len(got)} labels but its "
                f"{u.num_samples} samples give {want} CNN frames"
            )
        if got and not 0 <= min(got) <= max(got) < num_clusters:
            raise LabelError(f"{label_dir}/text: utterance '{u.utt_id}' has a label outside "
                             f"0..{num_clusters - 1}")
        frames[u.utt_id] = want
    return frames


@typechecked
def write_label_dir(data_dir: Path, out_dir: Path, km: KMeansModel, nj: int = 1,
                    feats: Optional[Dict[str, np.ndarray]] = None,
                    cluster: Optional[dict] = None) -> dict:
    """Label every usable utterance of ``data_dir`` into ``out_dir`` (see the module
    docstring); ``feats`` reuses features already computed. Returns the summary."""
    utts = read_data_dir(data_dir)
    usable, short = split_short(utts, str(data_dir))
    if not usable:
        raise LabelError(f"{data_dir}: no utterance of at least {WINDOW} samples to label")
    if feats is None:
        feats = mfcc_features(usable, nj=nj, cluster=cluster)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY).unlink(missing_ok=True)
    text = "".join(
        f"{u.utt_id} {' '.join(map(str, km.predict(feats[u.utt_id]).tolist()))}\n" for u in usable
    )
    atomic_write_text(out_dir / "text", text)
    atomic_write_text(out_dir / "wav.scp", "".join(f"{u.utt_id} {u.path}\n" for u in usable))
    atomic_write_text(out_dir / "utt2num_samples",
                      "".join(f"{u.utt_id} {u.num_samples}\n" for u in usable))
    frames = verify_labels(out_dir, km.num_clusters)
    summary = {
        "data_dir": str(data_dir), "utterances": len(usable), "frames": sum(frames.values()),
        "skipped_short": len(short), "skipped_utterances": [u.utt_id for u in short][:20],
        "num_clusters": km.num_clusters,
    }
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if short:
        logger.warning(f"{data_dir}: {len(short)} utterance(s) shorter than {WINDOW} samples "
                       f"skipped (see {out_dir / SUMMARY})")
    return summary


@typechecked
def label_dir_done(out_dir: Path, num_clusters: int) -> bool:
    """True when ``out_dir`` holds a finished label set for ``num_clusters`` (re-verified)."""
    if not (out_dir / SUMMARY).exists():
        return False
    summary = json.loads((out_dir / SUMMARY).read_text())
    if summary["num_clusters"] != num_clusters:
        raise LabelError(
            f"{out_dir} holds labels of {summary['num_clusters']} clusters, not {num_clusters}: "
            "use another output dir or remove it"
        )
    verify_labels(out_dir, num_clusters)
    return True
