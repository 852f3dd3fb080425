"""Run a frozen upstream once over a data dir and keep all its hidden states (recipe stage 5).

A SUPERB-style head reads every state h_0..h_L of a frozen upstream. Running the upstream on
every training step repeats the same forward pass for every epoch, every task and the
decoding; dumped once per data dir, the states serve them all, and a head's step is then the
head alone (README "Downstream tasks": what it saves, and what it costs on disk).

Layout of an output dir:
    states/<utt>.npy  (frames, (L + 1) * D) float16: h_0..h_L side by side on the feature axis
                      (ESPnet's ``npy`` data type; ESPnet's dataset reads it as float32);
                      a hard link where an earlier dir of the run holds the utterance
    feats.scp         "<utt> <path of its .npy>" (ESPnet's NpyScpWriter) in wav.scp's order,
                      written last: a killed run leaves no list, and a rerun starts the dir
                      again
    utt2num_frames    frames per utterance
    meta.json         upstream spec (and its file's sha256), dtype, normalisation, the data
                      dir's wav.scp sha256, L, D: a rerun with the same meta keeps the dir,
                      any other redoes it; also how many utterances were linked (reused)

The stacking_upstream frontend with ``input: states`` splits the rows back into h_0..h_L
(``split_states`` in espnet2_stacking.asr.frontend).
"""

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from espnet2.fileio.npy_scp import NpyScpWriter
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE, WINDOW
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.utterances import batches_by_length, padded_audio
from espnet2_stacking.upstreams.load import load_upstream

SCP = "feats.scp"
META = "meta.json"
logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_digest(spec: str) -> Optional[str]:
    """sha256 of a file (an export rewritten in place, or a data dir prepared again, must not
    reuse a dump); None for a spec that is not a file."""
    path = Path(spec)
    if not path.is_file():
        return None  # random:..., a Hugging Face dir name, fbank
    # one read per file and version: a run over several data dirs hashes the upstream once
    stat = path.stat()
    return _cached_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no second copy on disk), or a copy where the file system has none."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class UpstreamStatesDumper:
    """Dumps one upstream's states for several data dirs, each utterance computed once.

    Data dirs often share utterances (the demo's SID splits are drawn from its training set):
    an utterance with the same id, audio path and length as one already dumped in this run
    (or kept from an earlier run) is hard-linked from that file instead of recomputed. Each
    output dir stays self-contained: redoing one never changes another. The upstream is
    loaded once, on the first utterance that needs it.
    """

    @typechecked
    def __init__(self, upstream: str, upstream_dtype: str = "float32",
                 upstream_normalize: str = "none", device: str = "cpu",
                 max_batch_seconds: float = 60.0):
        self.upstream, self.dtype, self.normalize = upstream, upstream_dtype, upstream_normalize
        self.device, self.max_batch_seconds = device, max_batch_seconds
        self._model = None
        self._shape = None  # num_states and hidden_size, once a dir is done
        self._done = {}  # (utt, audio path, samples) -> (its .npy, frames)

    def _load(self):
        if self._model is None:
            self._model = load_upstream(self.upstream, dtype=self.dtype,
                                        normalize=self.normalize, device=self.device)
        return self._model

    def _remember(self, utts, out_dir: Path) -> None:
        """Offer a finished dir's files to the dirs dumped after it."""
        paths = dict(line.split(maxsplit=1) for line in
                     (out_dir / SCP).read_text(encoding="utf-8").splitlines() if line.strip())
        frames = dict(line.split() for line in
                      (out_dir / "utt2num_frames").read_text(encoding="utf-8").splitlines()
                      if line.strip())
        for u in utts:
            if u.utt_id in paths and Path(paths[u.utt_id]).is_file():
                self._done[(u.utt_id, u.path, u.num_samples)] = (Path(paths[u.utt_id]),
                                                                 int(frames[u.utt_id]))

    @typechecked
    def dump(self, data_dir: Path, out_dir: Path) -> dict:
        """Dump h_0..h_L for every utterance of ``data_dir``; returns meta.json's content
        (with utterances, frames, MB written, utterances reused and seconds)."""
        utts = read_data_dir(data_dir)
        meta = {"upstream": self.upstream, "upstream_sha256": _file_digest(self.upstream),
                "upstream_dtype": self.dtype, "upstream_normalize": self.normalize,
                "data_dir": str(data_dir),
                "wav_scp_sha256": _file_digest(str(data_dir / "wav.scp"))}
        if (out_dir / SCP).is_file() and (out_dir / META).is_file():
            done = json.loads((out_dir / META).read_text(encoding="utf-8"))
            if {k: done.get(k) for k in meta} == meta:
                logger.info(f"{out_dir}: the states of {self.upstream} are there: kept")
                self._remember(utts, out_dir)
                self._shape = {k: done[k] for k in ("num_states", "hidden_size")}
                return done
            logger.info(f"{out_dir}: dumped from another upstream or setting: dumping again")
        for u in utts:
            if u.num_samples < WINDOW:
                raise ValueError(
                    f"utterance '{u.utt_id}' of {data_dir}: {u.num_samples} samples give no "
                    f"frame of {self.upstream} (at least {WINDOW} needed); drop it from the "
                    "data dir")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (out_dir / "states").mkdir(parents=True)
        start = time.perf_counter()
        frames_of, paths, written, compute = {}, {}, 0, 0.0
        todo = []
        for u in utts:
            known = self._done.get((u.utt_id, u.path, u.num_samples))
            if known is None:
                todo.append(u)
                continue
            paths[u.utt_id] = out_dir / "states" / f"{u.utt_id}.npy"
            _link_or_copy(known[0], paths[u.utt_id])
            frames_of[u.utt_id] = known[1]
        if todo or self._shape is None:
            model = self._load()
            self._shape = {"num_states": model.num_layers + 1, "hidden_size": model.hidden_size}
        meta.update(self._shape)
        batches = batches_by_length(todo, int(self.max_batch_seconds * SAMPLE_RATE))
        writer = NpyScpWriter(out_dir / "states", out_dir / f".{SCP}.tmp")
        with writer:
            for k, batch in enumerate(batches):
                padded, lengths = padded_audio(batch, model.sample_rate)
                padded = padded.to(self.device)
                t0 = time.perf_counter()
                states, frame_lens = model.extract_features(padded, lengths.to(self.device))
                rows = torch.cat(states, dim=-1).to("cpu", torch.float16)
                compute += time.perf_counter() - t0
                for u, row, n in zip(batch, rows, frame_lens.tolist()):
                    frames_of[u.utt_id] = n
                    writer[u.utt_id] = np.ascontiguousarray(row[:n].numpy())
                    written += n * rows.size(-1) * 2
                if (k + 1) % 20 == 0 or k + 1 == len(batches):
                    logger.info(f"{out_dir}: {sum(len(b) for b in batches[:k + 1])} of "
                                f"{len(todo)} utterances computed")
        paths.update((u, Path(p)) for u, p in writer.data.items())
        # the list is the marker of a finished dir: the frame counts and meta first, the list
        # last
        atomic_write_text(out_dir / "utt2num_frames",
                          "".join(f"{u} {frames_of[u]}\n" for u in sorted(frames_of)))
        meta.update(utterances=len(frames_of), frames=sum(frames_of.values()),
                    reused=len(utts) - len(todo), megabytes=round(written / 1e6, 1),
                    compute_seconds=round(compute, 1),
                    seconds=round(time.perf_counter() - start, 1))
        atomic_write_text(out_dir / META, json.dumps(meta, indent=2) + "\n")
        # in wav.scp's order: ESPnet's decoding reads its key file and this list side by side
        order = [line.split(maxsplit=1)[0] for line in
                 (data_dir / "wav.scp").read_text(encoding="utf-8").splitlines() if line.strip()]
        atomic_write_text(out_dir / SCP, "".join(f"{u} {paths[u]}\n" for u in order))
        (out_dir / f".{SCP}.tmp").unlink()
        for u in utts:
            self._done[(u.utt_id, u.path, u.num_samples)] = (paths[u.utt_id], frames_of[u.utt_id])
        logger.info(f"{out_dir}: {meta['utterances']} utterances ({meta['reused']} reused from "
                    f"a dir dumped before), {meta['frames']} frames, {meta['megabytes']} MB "
                    f"written in {meta['seconds']} s")
        return meta


@typechecked
def dump_upstream_states(data_dir: Path, out_dir: Path, upstream: str,
                         upstream_dtype: str = "float32", upstream_normalize: str = "none",
                         device: str = "cpu", max_batch_seconds: float = 60.0) -> dict:
    """Dump h_0..h_L of ``upstream`` for every utterance of ``data_dir``; returns meta.json's
    content (with utterances, frames, MB written and seconds)."""
    return UpstreamStatesDumper(upstream, upstream_dtype, upstream_normalize, device,
                                max_batch_seconds).dump(data_dir, out_dir)
