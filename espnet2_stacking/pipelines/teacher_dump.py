"""Run a teacher once over a data dir and store chosen hidden states (recipe stage 2).

Layout of an output dir:
    layer_<t>/<utt>.npy   (frames, dim) float16, one file per utterance and teacher state
    layer_<t>.scp         "<utt> <path>" lines, read by ESPnet's ``npy`` data type
    cnn/<utt>.npy, cnn.scp  with cnn_features: the teacher's CNN output (frames, channels)
                          float16, which a student whose frontend is that CNN, frozen, reads
                          instead of recomputing it every step (student_cnn: teacher_frozen)
    utt2num_frames        frames per utterance (the same for every layer)
    meta.json             teacher spec, layers, width, dtype: a rerun must match it
    summary.json          utterances, hours, GB written, seconds

Every .npy is written under a temporary name and renamed, so a killed job leaves complete
files only and a rerun skips what is done. The .scp lists are written last, after a check that
every utterance has a file of the right shape.
"""

import json
import logging
import os
import queue
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.multiprocessing as mp
from tqdm import tqdm

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.data.atomic import atomic_output, atomic_write_text
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.training_inputs import check_npy
from espnet2_stacking.data.utterances import Utterance, batches_by_length, load_audio

BYTES_PER_VALUE = 2  # float16


def layer_path(out_dir: Path, layer: int, uttid: str) -> Path:
    return out_dir / f"layer_{layer}" / f"{uttid}.npy"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as tmp, tmp.open("wb") as f:
        np.save(f, array)


def cnn_path(out_dir: Path, uttid: str) -> Path:
    return out_dir / "cnn" / f"{uttid}.npy"


def is_done(out_dir: Path, layers: Sequence[int], uttid: str, cnn: bool = False) -> bool:
    return all(layer_path(out_dir, t, uttid).exists() for t in layers) and (
        not cnn or cnn_path(out_dir, uttid).exists())


def expected_bytes(utts: Sequence[Utterance], num_layers: int, hidden_size: int,
                   cnn_channels: int = 0) -> int:
    frames = sum(num_frames(u.num_samples) for u in utts)
    return frames * (hidden_size * num_layers + cnn_channels) * BYTES_PER_VALUE


def _worker(rank: int, shards: List[List[List[Utterance]]], spec: str, dtype: str,
            normalize: str, device: str, layers: List[int], cnn: bool, out_dir: str,
            threads: int, progress) -> None:
    """One spawned job: dump its batches, report each; an error goes back as text."""
    from espnet2_stacking.upstreams import load_upstream

    try:
        torch.set_num_threads(threads)
        teacher = load_upstream(spec, dtype=dtype, device=device, normalize=normalize)
        _dump_batches(shards[rank], teacher, device, layers, cnn, Path(out_dir), progress.put)
    except Exception as e:
        progress.put(("error", f"{type(e).__name__}: {e}"))
        raise SystemExit(1)
    progress.put(None)


def _finite_float16(array: torch.Tensor, uttid: str, what: str) -> np.ndarray:
    out = array.to(torch.float16).cpu().numpy()
    if not np.isfinite(out).all():
        raise FloatingPointError(
            f"utterance '{uttid}': {what} is not finite in float16 (a high-norm teacher: dump "
            "with --normalize layer_norm, and train with --teacher_normalize layer_norm in "
            "online mode)"
        )
    return out


def _dump_batches(batches, teacher, device: str, layers: Sequence[int], cnn: bool, out: Path,
                  report: Callable[[tuple], None]) -> None:
    """Run the teacher over the batches, writing one file per utterance and state (and its
    CNN output if ``cnn``); report (utterances, samples, compute seconds) after each batch."""
    deepest = max(layers)
    for batch in batches:
        wavs = [torch.from_numpy(load_audio(u, teacher.sample_rate)) for u in batch]
        lengths = torch.tensor([len(w) for w in wavs])
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(device)
        start = time.perf_counter()
        states, feats, frame_lens = teacher.extract_features_and_cnn(
            padded, lengths.to(device), num_layers=deepest)
        compute = time.perf_counter() - start
        for i, u in enumerate(batch):
            # Keep at most the frames the audio gives: teachers may add one (fairseq versions).
            keep = min(int(frame_lens[i]), num_frames(u.num_samples))
            for t in layers:
                array = _finite_float16(states[t][i, :keep], u.utt_id, f"teacher state {t}")
                save_npy_atomic(layer_path(out, t, u.utt_id), array)
            if cnn:
                array = _finite_float16(feats[i, :keep], u.utt_id, "the teacher's CNN output")
                save_npy_atomic(cnn_path(out, u.utt_id), array)
        report((len(batch), int(lengths.sum()), compute))


def verify(out_dir: Path, utts: Sequence[Utterance], layers: Sequence[int],
           hidden_size: int, cnn_channels: int = 0) -> Dict[str, int]:
    """Every utterance has, for every layer, a (frames, hidden_size) float16 file whose
    frame count is its audio's (or one less, as some teachers give), and with cnn_channels a
    (frames, cnn_channels) CNN file of the same frames; returns frames."""
    frames = {}
    for u in tqdm(utts, desc="verify", unit="utt", mininterval=2.0):
        files = [(layer_path(out_dir, t, u.utt_id), hidden_size) for t in layers]
        if cnn_channels:
            files.append((cnn_path(out_dir, u.utt_id), cnn_channels))
        for path, width in files:
            count = check_npy(path, u.utt_id, width, u.num_samples, dtype=np.float16)
            if u.utt_id in frames and frames[u.utt_id] != count:
                raise ValueError(f"utterance '{u.utt_id}': {path} disagrees with the other "
                                 "files on the frame count")
            frames[u.utt_id] = count
    return frames


def dump_teacher_states(data_dir: Path, out_dir: Path, spec: str, layers: Sequence[int],
                        dtype: str = "float32", normalize: str = "none", nj: int = 1,
                        ngpu: int = 0,
                        max_batch_seconds: float = 100.0, hidden_size: Optional[int] = None,
                        num_teacher_layers: Optional[int] = None,
                        cnn_features: bool = False) -> dict:
    """Dump; see the module docstring. Returns the summary.

    hidden_size / num_teacher_layers: when known (from a config), checked against the teacher.
    cnn_features: also store the teacher's CNN output (added to an existing dump if missing).
    """
    from espnet2_stacking.upstreams import load_upstream

    layers = sorted(set(layers))
    utts = read_data_dir(data_dir)
    if not utts:
        raise ValueError(f"{data_dir}: no utterances")
    # loaded on the CPU: it checks the request, and runs the dump itself when one job does it
    teacher = load_upstream(spec, dtype=dtype, device="cpu", normalize=normalize)
    if max(layers) > teacher.num_layers or min(layers) < 0:
        raise ValueError(
            f"layers {layers} are not all hidden states of the teacher (0..{teacher.num_layers})"
        )
    if hidden_size is not None and hidden_size != teacher.hidden_size:
        raise ValueError(
            f"the config expects teacher width {hidden_size}, but {spec} has {teacher.hidden_size}"
        )
    if num_teacher_layers is not None and num_teacher_layers != teacher.num_layers:
        raise ValueError(
            f"the config expects {num_teacher_layers} teacher layers, but {spec} has "
            f"{teacher.num_layers}"
        )
    meta = {"teacher": spec, "layers": layers, "hidden_size": teacher.hidden_size,
            "num_layers": teacher.num_layers, "dtype": dtype, "normalize": normalize,
            "stored_dtype": "float16", "cnn_features": cnn_features}
    cnn_channels = teacher.cnn_channels if cnn_features else 0
    sample_rate = teacher.sample_rate
    for u in utts:
        if num_frames(u.num_samples) == 0:
            raise ValueError(
                f"utterance '{u.utt_id}': {u.num_samples} samples is shorter than one teacher "
                "frame (400 samples)"
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        # CNN features may be added to a dump of the same teacher and states, never dropped
        meta["cnn_features"] = cnn_features or old.get("cnn_features", False)
        if {**old, "cnn_features": meta["cnn_features"]} != meta:
            raise ValueError(
                f"{out_dir} holds a dump of another teacher or layers ({old}); remove it or "
                "choose another --out_dir"
            )
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    for t in layers:
        (out_dir / f"layer_{t}").mkdir(exist_ok=True)
    if cnn_features:
        (out_dir / "cnn").mkdir(exist_ok=True)

    todo = [u for u in utts if not is_done(out_dir, layers, u.utt_id, cnn_features)]
    need = expected_bytes(todo, len(layers), meta["hidden_size"], cnn_channels)
    total = expected_bytes(utts, len(layers), meta["hidden_size"], cnn_channels)
    free = shutil.disk_usage(out_dir).free
    hours = sum(u.num_samples for u in utts) / sample_rate / 3600
    logging.info(
        f"dump: {len(utts)} utterances ({hours:.2f} h), layers {layers}"
        f"{' and the CNN output' if cnn_features else ''}: "
        f"{total / 1e9:.2f} GB in all, {need / 1e9:.2f} GB still to write "
        f"({len(utts) - len(todo)} done), {free / 1e9:.2f} GB free in {out_dir}"
    )
    if need > free * 0.98:
        raise OSError(
            f"not enough disk in {out_dir}: the dump needs {need / 1e9:.2f} GB more, "
            f"{free / 1e9:.2f} GB is free (dump fewer layers, or use --teacher_mode online)"
        )

    start = time.perf_counter()
    if todo:
        _run_jobs(todo, teacher, spec, dtype, normalize, layers, cnn_features, out_dir, nj,
                  ngpu, max_batch_seconds)
    del teacher
    frames = verify(out_dir, utts, layers, meta["hidden_size"], cnn_channels)
    for t in layers:
        atomic_write_text(out_dir / f"layer_{t}.scp", "".join(
            f"{u.utt_id} {layer_path(out_dir, t, u.utt_id).resolve()}\n" for u in utts))
    if cnn_features:
        atomic_write_text(out_dir / "cnn.scp", "".join(
            f"{u.utt_id} {cnn_path(out_dir, u.utt_id).resolve()}\n" for u in utts))
    atomic_write_text(out_dir / "utt2num_frames",
                      "".join(f"{u.utt_id} {frames[u.utt_id]}\n" for u in utts))
    seconds = time.perf_counter() - start
    summary = {
        "utterances": len(utts), "dumped_now": len(todo), "hours": round(hours, 4),
        "gb_written": round(need / 1e9, 4), "gb_total": round(total / 1e9, 4),
        "seconds": round(seconds, 2), "layers": layers, "cnn_features": cnn_features,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _run_jobs(todo, teacher, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu,
              max_batch_seconds):
    """Dump the todo list: in this process when one job does it all (a spawned job pays an
    interpreter start and a teacher load, seconds a short dump does not need), else in nj
    spawned jobs, batches dealt round robin."""
    sample_rate = teacher.sample_rate
    batches = batches_by_length(todo, int(max_batch_seconds * sample_rate))
    nj = max(1, min(nj, len(batches)))
    bar = tqdm(total=len(todo), desc="dump", unit="utt", mininterval=1.0)
    seconds = {"audio": 0.0, "compute": 0.0}

    def report(msg):
        n, samples, compute = msg
        seconds["audio"] += samples / sample_rate
        seconds["compute"] += compute
        bar.update(n)
        bar.set_postfix(rtf=f"{seconds['compute'] / max(seconds['audio'], 1e-9):.4f}")

    try:
        if nj == 1:
            device = "cuda:0" if ngpu > 0 else "cpu"
            try:
                _dump_batches(batches, teacher.to(device), device, layers, cnn, out_dir, report)
            except Exception as e:  # worded as a spawned job's failure is
                raise RuntimeError(f"dump failed: {type(e).__name__}: {e} (finished files are "
                                   "kept: fix the input and rerun to continue)") from e
        else:
            _spawn_jobs(batches, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu, report)
    finally:
        bar.close()


def _spawn_jobs(batches, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu, report):
    shards = [batches[i::nj] for i in range(nj)]
    threads = max(1, (os.cpu_count() or 1) // nj)
    ctx = mp.get_context("spawn")
    progress = ctx.Queue()
    procs = []
    for rank in range(nj):
        device = f"cuda:{rank % ngpu}" if ngpu > 0 else "cpu"
        p = ctx.Process(target=_worker, args=(rank, shards, spec, dtype, normalize, device,
                                              layers, cnn, str(out_dir), threads, progress))
        p.start()
        procs.append(p)
    finished = 0
    try:
        while finished < nj:
            try:
                msg = progress.get(timeout=5.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"dump job(s) {[procs.index(p) for p in dead]} failed (exit "
                        f"{[p.exitcode for p in dead]}); see the error above. Finished files "
                        "are kept: rerun to continue"
                    )
                continue
            if msg is None:
                finished += 1
                continue
            if msg[0] == "error":
                raise RuntimeError(f"dump failed: {msg[1]} (finished files are kept: fix the "
                                   "input and rerun to continue)")
            report(msg)
    finally:
        for p in procs:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
