"""Check a distillation run's data lists before the first update.

ESPnet's datasets read lazily: a wav.scp line pointing nowhere, a truncated or wrongly shaped
dump file, or ids that differ between lists surface mid-epoch as a KeyError or a shape error
deep in torch, after the run has already spent its time. This pass reads only scp lines,
file metadata and .npy headers (no audio, no arrays), so it is cheap next to one epoch, and
every error names the list, the utterance and what is wrong.
"""

import json
import logging
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.data import frame_shards
from espnet2_stacking.data import target_codecs as codecs
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.cropped_npy import CROPPED_NPY, parse_rows
from espnet2_stacking.data.kaldi_dir import read_scp

# A named logger: a root-level logging.info() before ESPnet's basicConfig would configure the
# root at WARNING and silence every later INFO line of the run.
logger = logging.getLogger(__name__)


def read_num_samples(path: Path) -> Dict[str, int]:
    """An ESPnet shape file (``utt 16000`` or ``utt 16000,1``) as utt -> samples."""
    out = {}
    for uttid, value in read_scp(path).items():
        try:
            out[uttid] = int(value.split(",")[0])
        except ValueError:
            raise ValueError(f"{path}: utterance '{uttid}' has no sample count: {value!r}") from None
    return out


def check_npy(path: Path, uttid: str, hidden_size: int, num_samples: Optional[int] = None,
              dtype: Optional[np.dtype] = None) -> int:
    """A dumped state: readable to its last byte, (frames, hidden_size), and (given the
    audio's length) frames equal to the CNN's or one fewer. Returns the frame count."""
    if not path.exists():
        raise FileNotFoundError(f"utterance '{uttid}': {path} is missing")
    try:
        # mmap checks the header and that the file holds every byte it announces
        array = np.load(path, mmap_mode="r")
    except Exception as e:
        raise ValueError(f"utterance '{uttid}': {path} is unreadable or truncated: {e}") from e
    if (dtype is not None and array.dtype != dtype) or array.ndim != 2 \
            or array.shape[1] != hidden_size:
        want = f"{np.dtype(dtype).name} " if dtype is not None else ""
        raise ValueError(f"utterance '{uttid}': {path} is {array.dtype} {array.shape}, expected "
                         f"{want}(frames, {hidden_size})")
    if num_samples is not None and not 0 <= num_frames(num_samples) - array.shape[0] <= 1:
        raise ValueError(
            f"utterance '{uttid}': {path} has {array.shape[0]} frames but its {num_samples} "
            f"samples give {num_frames(num_samples)}: the dump is not of this audio"
        )
    return array.shape[0]


def dump_meta_of(scp: Path) -> Optional[dict]:
    """meta.json of the dump a list belongs to (a dump_teacher_feats output with shards or
    codes), or None for lists of per-utterance float files (``--shard_size 0`` fp16, an
    earlier version's, or made elsewhere), which are checked file by file."""
    meta_file = scp.parent / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    if "codec" not in meta or not (scp.parent / "shards").is_dir():
        return None
    return None if meta["codec"] == "fp16" and meta.get("shard_size") == 0 else meta


def check_dump_list(scp: Path, table: Dict[str, str], meta: dict, width: int,
                    samples: Optional[Dict[str, int]]) -> None:
    """A dump's list: its codec file (the dump's teacher, this stream, the digest meta.json
    recorded), every line against the shard records, every shard file complete and unchanged
    (bytes, header, digest), codes in range, stored widths, and frames against the audio."""
    dump, stream, codec = scp.parent, scp.stem, meta["codec"]
    if codec != "fp16":
        codecs.load_codec(codecs.codec_path(dump, stream), {
            "teacher": meta["teacher"], "normalize": meta["normalize"], "stream": stream,
            "codec": codec, "num_codebooks": meta["num_codebooks"], "dim": width},
            (meta.get("codec_digests") or {}).get(stream))
    centroids = codecs.NUM_CENTROIDS if codec == "pq" else None
    frames = frame_shards.check_sharded_list(scp, table, dump, centroids)
    want = codecs.stored_width(codec, width, meta["num_codebooks"] or 0)
    for value in {parse_rows(v)[0] for v in table.values()}:
        header = np.load(value, mmap_mode="r")
        if header.ndim != 2 or header.shape[1] != want:
            raise ValueError(f"{value}: stores {header.dtype} {header.shape}, expected "
                             f"(frames, {want}): a {codec} stream {width} wide (the dump is of "
                             "another teacher width or codec)")
    if samples is not None:
        for uttid, n in frames.items():
            if not 0 <= num_frames(samples[uttid]) - n <= 1:
                raise ValueError(f"{scp}: utterance '{uttid}' has {n} frames but its "
                                 f"{samples[uttid]} samples give {num_frames(samples[uttid])}: "
                                 "the dump is not of this audio")


def _id_mismatch(name_a: str, a: set, name_b: str, b: set) -> str:
    only_a, only_b = sorted(a - b), sorted(b - a)
    parts = []
    if only_a:
        parts.append(f"{len(only_a)} only in {name_a} (e.g. {', '.join(only_a[:3])})")
    if only_b:
        parts.append(f"{len(only_b)} only in {name_b} (e.g. {', '.join(only_b[:3])})")
    return "; ".join(parts)


def check_training_inputs(entries: Sequence[Tuple[str, str, str]], shape_file: Optional[str],
                          hidden_size: int, widths: Optional[Dict[str, int]] = None) -> int:
    """Check one split's ``--*_data_path_and_name_and_type`` entries; returns utterances.

    Every list must hold the same utterance ids as the first (and as the shape file); every
    ``sound`` path must exist (piped commands are left to the reader); every ``npy`` list
    must pass :func:`check_npy` against the shape file's sample counts, with the width
    ``widths[name]`` (default: ``hidden_size``, the teacher's).
    """
    start = time.perf_counter()
    tables = [(path, name, kind, read_scp(Path(path))) for path, name, kind in entries]
    if not tables:
        return 0
    ref_path, _, _, ref = tables[0]
    ref_ids = set(ref)
    samples = read_num_samples(Path(shape_file)) if shape_file else None
    others = [(path, set(t)) for path, _, _, t in tables[1:]]
    if samples is not None:
        others.append((shape_file, set(samples)))
    for path, ids in others:
        if ids != ref_ids:
            raise ValueError(f"utterance ids of {path} and {ref_path} disagree: "
                             f"{_id_mismatch(path, ids, ref_path, ref_ids)}")
    for path, name, kind, table in tables:
        if kind == "sound":
            for uttid, value in table.items():
                if not value.endswith("|") and not Path(value).exists():
                    raise FileNotFoundError(f"{path}: utterance '{uttid}' points to {value}, "
                                            "which does not exist")
        elif kind in ("npy", CROPPED_NPY):
            width = (widths or {}).get(name, hidden_size)
            meta = dump_meta_of(Path(path))
            if meta is not None:  # a dump_teacher_feats list: checked against its records
                check_dump_list(Path(path), table, meta, width, samples)
                continue
            for uttid, value in table.items():
                check_npy(Path(value), uttid, width, None if samples is None else samples[uttid])
    logger.info(f"checked {len(tables)} lists of {len(ref)} utterances "
                 f"({', '.join(name for _, name, _, _ in tables)}) in "
                 f"{time.perf_counter() - start:.1f} s")
    return len(ref)


CHECK_RECORD = "inputs_checked.json"


def inputs_fingerprint(entries: Sequence[Tuple[str, str, str]], shape_file: Optional[str],
                       hidden_size: int, widths: Optional[Dict[str, int]] = None) -> dict:
    """What a check of these inputs depends on: each list file's path, size and mtime (the dump
    and data prep write their lists last, by rename, so a changed dump changes them), the shape
    file's, and the widths checked against."""
    def stat(path) -> list:
        st = Path(path).stat()
        return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]

    # a dump's shard files (and codec files) may be replaced under unchanged lists
    shards = sorted({str(p) for path, _, _ in entries if dump_meta_of(Path(path)) is not None
                     for p in [*(Path(path).parent / "shards").glob("*.json"),
                               *(Path(path).parent / "codecs").glob("*.npz"),
                               *(Path(path).parent / Path(path).stem).glob("*.npy")]})
    return {
        "lists": [[name, kind, *stat(path)] for path, name, kind in entries],
        "dump_files": [stat(p) for p in shards],
        "shape_file": None if shape_file is None else stat(shape_file),
        "hidden_size": hidden_size,
        "widths": dict(sorted((widths or {}).items())),
    }


def check_training_inputs_once(entries: Sequence[Tuple[str, str, str]], shape_file: Optional[str],
                               hidden_size: int, widths: Optional[Dict[str, int]] = None,
                               record_dir: Optional[Path] = None) -> Optional[int]:
    """:func:`check_training_inputs`, skipped when ``record_dir/inputs_checked.json`` records a
    passed check of exactly these inputs (at 960 h the check opens about a million file headers,
    on every rank, at every start). A passed check is recorded there (write, then rename);
    without ``record_dir`` it always runs. Returns the utterances checked, None when skipped.
    """
    if record_dir is None:
        return check_training_inputs(entries, shape_file, hidden_size, widths)
    record = Path(record_dir) / CHECK_RECORD
    fingerprint = inputs_fingerprint(entries, shape_file, hidden_size, widths)
    key = json.dumps(fingerprint, sort_keys=True)
    try:
        done = json.loads(record.read_text())
    except (FileNotFoundError, ValueError):
        done = {}
    if key in done.get("checked", []):
        logger.info(f"inputs already checked ({record}): {len(entries)} lists unchanged")
        return None
    count = check_training_inputs(entries, shape_file, hidden_size, widths)
    # keep the last few passed checks (train and valid splits, a changed config) in one file
    checked = [k for k in done.get("checked", []) if k != key][-7:] + [key]
    try:
        atomic_write_text(record, json.dumps({"checked": checked}, indent=1) + "\n")
    except OSError as e:  # a read-only shared dump: check again next time
        logger.warning(f"cannot record the passed input check in {record}: {e}")
    return count
