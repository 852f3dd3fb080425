"""Run a teacher once over a data dir and store chosen hidden states (recipe stage 2).

Layout of an output dir (streams: ``layer_<t>`` per dumped teacher state, and ``cnn``):
    <stream>/shard_<k>.npy  the stream's frames of shard k's utterances, one after another, in
                          the codec's stored form (data/target_codecs.py): fp16 (frames, dim)
                          float16, int8 (frames, dim + 2) int8, pq (frames, M) uint8 codes
    <stream>.scp          "<utt> <shard>:<start>:<stop>" lines, read by crop through the
                          ``cropped_npy`` data type (data/frame_shards.py)
    cnn: with cnn_features, the teacher's CNN output (frames, channels), which a student whose
                          frontend is that CNN, frozen, reads instead of recomputing it
                          every step (student_cnn: teacher_frozen)
    codecs/<stream>.npz   int8 and pq: the codec's parameters, trained on a sample of this
                          teacher's frames (or taken from --codecs_from, e.g. the train dump's
                          for the dev dump: a model decodes both with one set)
    shards.json           the utterances of each shard; shards/shard_<k>.json each shard's record
    utt2num_frames        frames per utterance (the same for every stream)
    meta.json             teacher spec, layers, width, codec: a rerun must match it
    summary.json          utterances, hours, GB written, seconds

A shard is written file by file (each under a temporary name, then renamed) and its record
last, so a killed job leaves whole shards only and a rerun dumps the others. The .scp lists are
written last, after a check of every shard against its record. ``shard_size`` 0 keeps one file
per utterance (``<stream>/<utt>.npy``, lists of whole files).
"""

import json
import logging
import os
import queue
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.multiprocessing as mp
from tqdm import tqdm

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.data import frame_shards as shards_io
from espnet2_stacking.data import target_codecs as codecs
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.utterances import Utterance, batches_by_length, padded_audio

DEFAULT_SHARD_SIZE = 10**9  # stored bytes per shard (all streams): held in memory while written
DEFAULT_CODEBOOK_FRAMES = 100_000  # frames the int8 / pq parameters are trained on


def stream_name(layer: int) -> str:
    return f"layer_{layer}"


def stream_widths(layers: Sequence[int], hidden_size: int, cnn_channels: int) -> Dict[str, int]:
    widths = {stream_name(t): hidden_size for t in layers}
    if cnn_channels:
        widths["cnn"] = cnn_channels
    return widths


def frame_bytes(widths: Dict[str, int], codec: str, num_codebooks: int) -> int:
    """Stored bytes of one frame of every stream."""
    return sum(codecs.bytes_per_frame(codec, w, num_codebooks) for w in widths.values())


def projected_sizes(frames: int, widths: Dict[str, int], num_codebooks: int) -> Dict[str, int]:
    """Bytes of a dump of ``frames`` frames per codec (shard headers aside)."""
    return {c: frames * frame_bytes(widths, c, num_codebooks) for c in codecs.CODECS}


def _encode_check(states: torch.Tensor, uttid: str, what: str, encoder) -> np.ndarray:
    """A state of one utterance in its stored form; non-finite values are an error naming it."""
    x = states.float().cpu().numpy()
    if encoder.codec == "fp16":
        x16 = x.astype(np.float16)
        if not np.isfinite(x16).all():
            raise FloatingPointError(
                f"utterance '{uttid}': {what} is not finite in float16 (a high-norm teacher: dump "
                "with --normalize layer_norm, and train with --teacher_normalize layer_norm in "
                "online mode)")
        return x16
    if not np.isfinite(x).all():
        raise FloatingPointError(f"utterance '{uttid}': {what} is not finite")
    return encoder(x)


def _teacher_states(teacher, batch: Sequence[Utterance], device: str, deepest: int):
    """(states, CNN output, frame lengths, compute seconds) of one batch."""
    padded, lengths = padded_audio(batch, teacher.sample_rate)
    padded = padded.to(device)
    start = time.perf_counter()
    states, feats, frame_lens = teacher.extract_features_and_cnn(
        padded, lengths.to(device), num_layers=deepest)
    return states, feats, frame_lens, int(lengths.sum()), time.perf_counter() - start


def _dump_shards(shards, teacher, device: str, layers: Sequence[int], cnn: bool, out: Path,
                 encoders: Dict[str, "codecs.Encoder"], max_batch_samples: int,
                 report: Callable[[tuple], None]) -> None:
    """Run the teacher over each shard's utterances and write the shard (its files, then its
    record); report (utterances, samples, compute seconds) after each batch."""
    deepest = max(layers)
    for name, utts in shards:
        stored: Dict[str, Dict[str, np.ndarray]] = {}
        for batch in batches_by_length(utts, max_batch_samples):
            states, feats, frame_lens, samples, compute = _teacher_states(
                teacher, batch, device, deepest)
            for i, u in enumerate(batch):
                # at most the frames the audio gives: teachers may add one (fairseq versions)
                keep = min(int(frame_lens[i]), num_frames(u.num_samples))
                row = {stream_name(t): _encode_check(states[t][i, :keep], u.utt_id,
                                                     f"teacher state {t}", encoders[stream_name(t)])
                       for t in layers}
                if cnn:
                    row["cnn"] = _encode_check(feats[i, :keep], u.utt_id,
                                               "the teacher's CNN output", encoders["cnn"])
                stored[u.utt_id] = row
            report((len(batch), samples, compute))
        order = [u.utt_id for u in utts]
        frames = [(uttid, len(next(iter(stored[uttid].values())))) for uttid in order]
        shards_io.write_shard(out, name, frames, {
            stream: [stored[uttid][stream] for uttid in order] for stream in encoders})


def _load_encoders(out_dir: Path, meta: dict, streams: Sequence[str]) -> Dict[str, "codecs.Encoder"]:
    codec = meta["codec"]
    if codec == "fp16":
        return {s: codecs.Encoder("fp16") for s in streams}
    return {s: codecs.Encoder(codec, codecs.load_codec(
        codecs.codec_path(out_dir, s), codec_expect(meta, s), meta["codec_digests"][s]))
        for s in streams}


def codec_expect(meta: dict, stream: str) -> dict:
    """The header fields a stream's codec file must hold for this dump."""
    return {"teacher": meta["teacher"], "normalize": meta["normalize"], "stream": stream,
            "codec": meta["codec"], "num_codebooks": meta["num_codebooks"]}


def _worker(rank: int, jobs, spec: str, dtype: str, normalize: str, device: str,
            layers: List[int], cnn: bool, out_dir: str, max_batch_samples: int, threads: int,
            progress) -> None:
    """One spawned job: dump its shards, report each batch; an error goes back as text."""
    from espnet2_stacking.upstreams import load_upstream

    try:
        torch.set_num_threads(threads)
        out = Path(out_dir)
        meta = json.loads((out / "meta.json").read_text())
        streams = [stream_name(t) for t in layers] + (["cnn"] if cnn else [])
        encoders = _load_encoders(out, meta, streams)
        teacher = load_upstream(spec, dtype=dtype, device=device, normalize=normalize)
        _dump_shards(jobs[rank], teacher, device, layers, cnn, out, encoders,
                     max_batch_samples, progress.put)
    except Exception as e:
        progress.put(("error", f"{type(e).__name__}: {e}"))
        raise SystemExit(1)
    progress.put(None)


def verify(out_dir: Path, utts: Sequence[Utterance], names: Sequence[str],
           widths: Dict[str, int], meta: dict) -> Dict[str, int]:
    """Every shard's files against its record (bytes, shape, dtype, digest, codes in range),
    every utterance in exactly one shard with the frames its audio gives (or one fewer, as some
    teachers give); returns frames per utterance."""
    by_id = {u.utt_id: u for u in utts}
    frames: Dict[str, int] = {}
    centroids = codecs.NUM_CENTROIDS if meta["codec"] == "pq" else None
    for name in tqdm(names, desc="verify", unit="shard", mininterval=2.0):
        rec = shards_io.read_record(out_dir, name)
        for stream, width in widths.items():
            entry = rec["files"].get(stream)
            path = shards_io.shard_file(out_dir, stream, name)
            want = codecs.stored_width(meta["codec"], width, meta["num_codebooks"] or 0)
            if entry is None or entry["width"] != want:
                raise ValueError(f"{path}: its record {shards_io.record_path(out_dir, name)} "
                                 f"lacks it or gives another width (expected {want})")
            shards_io.check_shard_file(path, entry, centroids)
            if entry["rows"] != sum(n for _, n in rec["utts"]):
                raise ValueError(f"{path}: {entry['rows']} rows but its record's utterances "
                                 "hold another count")
        for uttid, n in rec["utts"]:
            u = by_id.get(uttid)
            if u is None or uttid in frames:
                raise ValueError(f"{shards_io.record_path(out_dir, name)}: utterance '{uttid}' "
                                 "is not in the data dir, or in two shards")
            if not 0 <= num_frames(u.num_samples) - n <= 1:
                raise ValueError(f"utterance '{uttid}': {n} frames in shard {name} but its "
                                 f"{u.num_samples} samples give {num_frames(u.num_samples)}: "
                                 "the dump is not of this audio")
            frames[uttid] = n
    missing = [u.utt_id for u in utts if u.utt_id not in frames]
    if missing:
        raise ValueError(f"{out_dir}: {len(missing)} utterances in no shard (e.g. {missing[:3]})")
    return frames


def _codec_sample(utts: Sequence[Utterance], teacher, device: str, layers: Sequence[int],
                  cnn: bool, frames_wanted: int, max_batch_samples: int,
                  seed: int = 0) -> Dict[str, np.ndarray]:
    """float32 frames of each stream from a random sample of utterances (about frames_wanted,
    spread over many utterances), to train the codecs on."""
    rng = np.random.default_rng(seed)
    picked, total = [], 0
    for i in rng.permutation(len(utts)):
        picked.append(utts[i])
        total += num_frames(utts[i].num_samples)
        if total >= frames_wanted:
            break
    parts: Dict[str, List[np.ndarray]] = {}
    for batch in batches_by_length(picked, max_batch_samples):
        states, feats, frame_lens, _, _ = _teacher_states(teacher, batch, device, max(layers))
        for i, u in enumerate(batch):
            keep = min(int(frame_lens[i]), num_frames(u.num_samples))
            for t in layers:
                parts.setdefault(stream_name(t), []).append(states[t][i, :keep].float().cpu().numpy())
            if cnn:
                parts.setdefault("cnn", []).append(feats[i, :keep].float().cpu().numpy())
    out = {}
    for stream, p in parts.items():
        x = np.concatenate(p)
        if not np.isfinite(x).all():
            raise FloatingPointError(f"{stream}: the teacher's states are not finite on the "
                                     "codec sample (dump with --normalize layer_norm)")
        if len(x) > frames_wanted:
            x = x[rng.choice(len(x), frames_wanted, replace=False)]
        out[stream] = x
    return out


def _prepare_codecs(out_dir: Path, meta: dict, widths: Dict[str, int], utts, teacher,
                    device: str, codecs_from: Optional[Path], codebook_frames: int,
                    max_batch_samples: int, layers, cnn: bool) -> Dict[str, str]:
    """The codec files of the dump: kept from an earlier run, copied from codecs_from (checked
    against this dump's teacher and codec), or trained here; returns their digests."""
    digests = dict(meta.get("codec_digests") or {})
    todo = [s for s in widths if s not in digests or not codecs.codec_path(out_dir, s).is_file()]
    if not todo:
        for s in widths:  # an earlier run's files, as recorded
            codecs.load_codec(codecs.codec_path(out_dir, s), codec_expect(meta, s), digests[s])
        return digests
    if codecs_from is not None:
        for s in todo:
            src = codecs.codec_path(codecs_from, s)
            codecs.load_codec(src, {**codec_expect(meta, s), "dim": widths[s]})
            dst = codecs.codec_path(out_dir, s)
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, dst)
            digests[s] = codecs.file_digest(dst)
        logging.info(f"codecs of {', '.join(todo)} taken from {codecs_from}")
        return digests
    start = time.perf_counter()
    sample = _codec_sample(utts, teacher, device, layers, cnn, codebook_frames, max_batch_samples)
    for s in todo:
        header = {k: v for k, v in codec_expect(meta, s).items() if k not in ("codec", "num_codebooks")}
        params = codecs.train_codec(sample[s], meta["codec"], meta["num_codebooks"], header)
        digests[s] = codecs.save_codec(codecs.codec_path(out_dir, s), params)
    logging.info(f"{meta['codec']} codecs of {', '.join(todo)} trained on "
                 f"{len(next(iter(sample.values())))} frames in {time.perf_counter() - start:.1f} s")
    return digests


SHARDS_PER_JOB = 4  # a shard is a job's unit of work: enough of them to keep every job busy


def _shard_plan(out_dir: Path, utts: Sequence[Utterance], bytes_per_frame: int,
                shard_size: int, jobs: int, record: bool = True) -> List[List[str]]:
    """The shards' utterances: shards.json of an earlier run (the same utterances), else cut
    now (shards of shard_size stored bytes at most, and at least SHARDS_PER_JOB per job) and
    recorded (record), so reruns and the jobs of one dump agree."""
    path = out_dir / "shards.json"
    if path.exists():
        plan = json.loads(path.read_text())
        listed = [u for shard in plan["shards"] for u in shard]
        if sorted(listed) != sorted(u.utt_id for u in utts) or plan["shard_size"] != shard_size:
            raise ValueError(f"{path}: the dump was started for other utterances or another "
                             "shard size; remove the dump dir or choose another --out_dir")
        return plan["shards"]
    frames = [(u.utt_id, num_frames(u.num_samples)) for u in utts]
    size = shard_size
    if shard_size > 0:
        total = sum(n for _, n in frames) * bytes_per_frame
        size = min(shard_size, -(-total // (SHARDS_PER_JOB * max(1, jobs))))
    plan = shards_io.plan_shards(frames, bytes_per_frame, size)
    if record:
        atomic_write_text(path, json.dumps({"shard_size": shard_size, "shards": plan}) + "\n")
    return plan


def _is_done(out_dir: Path, name: str, streams: Sequence[str]) -> bool:
    path = shards_io.record_path(out_dir, name)
    return path.exists() and all(s in shards_io.read_record(out_dir, name)["files"] for s in streams)


def dump_teacher_states(data_dir: Path, out_dir: Path, spec: str, layers: Sequence[int],
                        dtype: str = "float32", normalize: str = "none", nj: int = 1,
                        ngpu: int = 0,
                        max_batch_seconds: float = 100.0, hidden_size: Optional[int] = None,
                        num_teacher_layers: Optional[int] = None,
                        cnn_features: bool = False, codec: str = "fp16",
                        num_codebooks: int = 8, shard_size: int = DEFAULT_SHARD_SIZE,
                        codebook_frames: int = DEFAULT_CODEBOOK_FRAMES,
                        codecs_from: Optional[Path] = None,
                        job: Optional[Tuple[int, int]] = None,
                        codecs_only: bool = False) -> dict:
    """Dump; see the module docstring. Returns the summary.

    hidden_size / num_teacher_layers: when known (from a config), checked against the teacher.
    cnn_features: also store the teacher's CNN output (added to an existing dump if missing).
    codec: fp16, int8 or pq (target_codecs.py); num_codebooks: pq's bytes per frame.
    shard_size: stored bytes per shard (0: one file per utterance).
    codebook_frames: frames the int8 / pq parameters are trained on; codecs_from: a dump dir
    whose codec files to use instead (the train set's, for the dev set).
    job: (j, n), 0-based: dump only shards k with k % n == j (one of n jobs a recipe dispatches),
    neither verify nor write lists (a run without job does, once all jobs ended). int8 / pq
    jobs need the codec files made beforehand: codecs_only makes them (and meta.json) and stops.
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
    sample_rate = teacher.sample_rate
    for u in utts:
        if num_frames(u.num_samples) == 0:
            raise ValueError(
                f"utterance '{u.utt_id}': {u.num_samples} samples is shorter than one teacher "
                "frame (400 samples)"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "meta.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    # CNN features may be added to a dump of the same teacher and states, never dropped
    cnn_features = cnn_features or old.get("cnn_features", False)
    widths = stream_widths(layers, teacher.hidden_size, teacher.cnn_channels if cnn_features else 0)
    codecs.check_codec_options(codec, widths, num_codebooks)
    meta = {"teacher": spec, "layers": layers, "hidden_size": teacher.hidden_size,
            "num_layers": teacher.num_layers, "dtype": dtype, "normalize": normalize,
            "stored_dtype": codecs.stored_dtype(codec).name, "cnn_features": cnn_features,
            "codec": codec, "num_codebooks": num_codebooks if codec == "pq" else None,
            "shard_size": shard_size}
    if old:
        fixed = {k: v for k, v in old.items() if k not in ("cnn_features", "codec_digests")}
        if fixed != {k: v for k, v in meta.items() if k != "cnn_features"}:
            raise ValueError(
                f"{out_dir} holds a dump of another teacher, layers, codec or shard size "
                f"({meta_path}: {fixed}); remove it or choose another --out_dir")
    meta["codec_digests"] = old.get("codec_digests", {})
    streams = list(widths)
    if codec != "fp16" and job is not None and not all(
            codecs.codec_path(out_dir, s).is_file() for s in streams):
        raise ValueError(f"{out_dir}: a --job of a {codec} dump needs its codec files first "
                         "(dump_teacher_feats --codecs_only true, as stage 2 runs it)")
    max_batch_samples = int(max_batch_seconds * sample_rate)
    plan = _shard_plan(out_dir, utts, frame_bytes(widths, codec, num_codebooks), shard_size,
                       nj if job is None else job[1], record=not codecs_only)
    names = shards_io.shard_names(plan, shard_size)
    by_id = {u.utt_id: u for u in utts}
    mine = range(len(names)) if job is None else range(job[0], len(names), job[1])
    todo = [(names[k], [by_id[i] for i in plan[k]]) for k in mine
            if not _is_done(out_dir, names[k], streams)]
    if codecs_only:
        todo = []

    frames_all = sum(num_frames(u.num_samples) for u in utts)
    frames_todo = sum(num_frames(u.num_samples) for _, us in todo for u in us)
    sizes = projected_sizes(frames_all, widths, num_codebooks)
    need = projected_sizes(frames_todo, widths, num_codebooks)[codec]
    free = shutil.disk_usage(out_dir).free
    hours = sum(u.num_samples for u in utts) / sample_rate / 3600
    logging.info(
        f"dump: {len(utts)} utterances ({hours:.2f} h), streams {', '.join(streams)}; projected "
        "size " + ", ".join(f"{c}{f' (M={num_codebooks})' if c == 'pq' else ''} "
                            f"{b / 1e9:.3f} GB" for c, b in sizes.items())
        + f"; writing {codec}: {need / 1e9:.3f} GB still to write in {len(todo)} of "
        f"{len(names)} shards, {free / 1e9:.2f} GB free in {out_dir}")
    if need > free * 0.98:
        raise OSError(
            f"not enough disk in {out_dir}: the {codec} dump needs {need / 1e9:.2f} GB more, "
            f"{free / 1e9:.2f} GB is free (a smaller codec: --codec int8 or pq, fewer layers, "
            "or --teacher_mode online)")
    device = "cuda:0" if ngpu > 0 else "cpu"
    start = time.perf_counter()
    if codec != "fp16":
        meta["codec_digests"] = _prepare_codecs(
            out_dir, meta, widths, utts, teacher.to(device), device, codecs_from,
            codebook_frames, max_batch_samples, layers, cnn_features)
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    for s in streams:
        (out_dir / s).mkdir(exist_ok=True)
    (out_dir / "shards").mkdir(exist_ok=True)

    if todo:
        encoders = _load_encoders(out_dir, meta, streams)
        _run_jobs(todo, teacher, spec, dtype, normalize, layers, cnn_features, out_dir, nj,
                  ngpu, max_batch_samples, encoders)
    del teacher
    if job is not None or codecs_only:
        return {"job": "codecs" if codecs_only else f"{job[0] + 1}/{job[1]}",
                "dumped_now": sum(len(us) for _, us in todo), "codec": codec,
                "seconds": round(time.perf_counter() - start, 2)}
    frames = verify(out_dir, utts, names, widths, meta)
    records = [shards_io.read_record(out_dir, n) for n in names]
    for s in streams:
        atomic_write_text(out_dir / f"{s}.scp",
                          shards_io.list_lines(out_dir, s, names, records, shard_size))
    atomic_write_text(out_dir / "utt2num_frames",
                      "".join(f"{u.utt_id} {frames[u.utt_id]}\n" for u in utts))
    seconds = time.perf_counter() - start
    written = sum(sum(e["bytes"] for e in r["files"].values()) for r in records)
    summary = {
        "utterances": len(utts), "dumped_now": sum(len(us) for _, us in todo),
        "shards": len(names), "shards_dumped_now": len(todo), "hours": round(hours, 4),
        "codec": codec, "gb_written": round(need / 1e9, 4), "gb_total": round(written / 1e9, 4),
        "bytes_per_frame": frame_bytes(widths, codec, num_codebooks),
        "projected_bytes": sizes,
        "seconds": round(seconds, 2), "layers": layers, "cnn_features": cnn_features,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _run_jobs(todo, teacher, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu,
              max_batch_samples, encoders):
    """Dump the shards to do: in this process when one job does it all (a spawned job pays an
    interpreter start and a teacher load, seconds a short dump does not need), else in nj
    spawned jobs, shards dealt round robin."""
    sample_rate = teacher.sample_rate
    nj = max(1, min(nj, len(todo)))
    bar = tqdm(total=sum(len(us) for _, us in todo), desc="dump", unit="utt", mininterval=1.0)
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
                _dump_shards(todo, teacher.to(device), device, layers, cnn, out_dir, encoders,
                             max_batch_samples, report)
            except Exception as e:  # worded as a spawned job's failure is
                raise RuntimeError(f"dump failed: {type(e).__name__}: {e} (finished shards are "
                                   "kept: fix the input and rerun to continue)") from e
        else:
            _spawn_jobs(todo, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu,
                        max_batch_samples, report)
    finally:
        bar.close()


def _spawn_jobs(todo, spec, dtype, normalize, layers, cnn, out_dir, nj, ngpu, max_batch_samples,
                report):
    jobs = [todo[i::nj] for i in range(nj)]
    threads = max(1, (os.cpu_count() or 1) // nj)
    ctx = mp.get_context("spawn")
    progress = ctx.Queue()
    procs = []
    for rank in range(nj):
        device = f"cuda:{rank % ngpu}" if ngpu > 0 else "cpu"
        p = ctx.Process(target=_worker, args=(rank, jobs, spec, dtype, normalize, device, layers,
                                              cnn, str(out_dir), max_batch_samples, threads,
                                              progress))
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
                        f"{[p.exitcode for p in dead]}); see the error above. Finished shards "
                        "are kept: rerun to continue"
                    )
                continue
            if msg is None:
                finished += 1
                continue
            if msg[0] == "error":
                raise RuntimeError(f"dump failed: {msg[1]} (finished shards are kept: fix the "
                                   "input and rerun to continue)")
            report(msg)
    finally:
        for p in procs:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
