"""Sharded storage of dumped teacher states: a few large files per stream, read by crop.

A dump's utterances are cut, in data-dir order, into shards of about ``shard_size`` stored bytes
(``shards.json``, fixed at the first run so a rerun cuts them alike). Shard k of stream s
(``layer_<t>`` or ``cnn``) is one .npy file ``<s>/shard_<k>.npy`` holding its utterances' frames
one after another in the codec's stored form (:mod:`espnet2_stacking.data.target_codecs`). The
lists ``<s>.scp`` map each utterance to its rows, ``<utt> <shard>:<start>:<stop>``, which
ESPnet reads through the ``cropped_npy`` data type (only a crop's rows, memory-mapped).

A shard is done when its record ``shards/shard_<k>.json`` exists: written (then renamed) after
every file of the shard, it holds the utterances, their rows and, per file, shape, dtype, bytes
and digests. A killed dump thus leaves whole shards only, and a rerun writes the others. The
records are what a reader checks a shard and the lists against: a truncated file (bytes), an
overwritten one (digest), a list line that is not the record's rows, and codes out of range.
``shard_size`` 0 keeps one file per utterance (no row ranges in the lists).
"""

import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from espnet2_stacking.data.atomic import atomic_output, atomic_write_text

SAMPLED_BLOCKS = 64  # 4 KiB blocks spread over a float shard for its cheap digest
BLOCK = 4096


def plan_shards(utts: Sequence[Tuple[str, int]], bytes_per_frame: int,
                shard_size: int) -> List[List[str]]:
    """Utterance ids cut in order into shards of about shard_size stored bytes (0: one each).

    utts: (utt id, frames) in data-dir order."""
    if shard_size <= 0:
        return [[u] for u, _ in utts]
    shards, current, size = [], [], 0
    for uttid, frames in utts:
        current.append(uttid)
        size += frames * bytes_per_frame
        if size >= shard_size:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    return shards


def shard_names(plan: List[List[str]], shard_size: int) -> List[str]:
    # one file per utterance keeps today's names, <stream>/<utt>.npy
    return [p[0] if shard_size <= 0 else f"shard_{k:05d}" for k, p in enumerate(plan)]


def record_path(out_dir: Path, name: str) -> Path:
    return out_dir / "shards" / f"{name}.json"


def shard_file(out_dir: Path, stream: str, name: str) -> Path:
    return out_dir / stream / f"{name}.npy"


def sampled_digest(path: Path) -> str:
    """A digest of the size and of blocks spread over the file: reads about 256 KiB whatever the
    size, so a float shard can be checked at every training start; it finds a file replaced
    by another of the same size (another dump's, a rewritten one) unless every sampled block
    agrees."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    offsets = np.linspace(0, max(size - BLOCK, 0), SAMPLED_BLOCKS).astype(np.int64)
    with open(path, "rb") as f:
        for off in np.unique(offsets):
            f.seek(int(off))
            h.update(f.read(BLOCK))
    return h.hexdigest()


def full_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(out_dir: Path, name: str, utts: Sequence[Tuple[str, int]],
                arrays: Dict[str, List[np.ndarray]]) -> None:
    """Write one shard: a file per stream (each written then renamed), then its record.

    utts: (utt id, frames) in the order of each stream's list of arrays."""
    files = {}
    for stream, parts in arrays.items():
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        path = shard_file(out_dir, stream, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            np.save(f, data)
        files[stream] = {"file": f"{stream}/{name}.npy", "rows": int(data.shape[0]),
                         "width": int(data.shape[1]), "dtype": data.dtype.name,
                         "bytes": path.stat().st_size, "sampled_digest": sampled_digest(path),
                         "digest": full_digest(path) if data.dtype == np.uint8 else None}
    record = {"utts": [[u, int(n)] for u, n in utts], "files": files}
    record_path(out_dir, name).parent.mkdir(exist_ok=True)
    atomic_write_text(record_path(out_dir, name), json.dumps(record) + "\n")


def read_record(out_dir: Path, name: str) -> dict:
    path = record_path(out_dir, name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable shard record: {e}") from e


def check_shard_file(path: Path, entry: dict, num_centroids: Optional[int] = None) -> None:
    """One stored file against its record: bytes (truncated), header (shape, dtype), digest
    (overwritten; the full one for codes, which are small, a sampled one for floats), and
    for codes every code below num_centroids."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shard file missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ValueError(f"{path}: {size} bytes but its record says {entry['bytes']} "
                         "(truncated or overwritten; dump it again)")
    try:
        array = np.load(path, mmap_mode="r")
    except Exception as e:
        raise ValueError(f"{path}: unreadable or truncated: {e}") from e
    want = (entry["rows"], entry["width"])
    if array.shape != want or array.dtype.name != entry["dtype"]:
        raise ValueError(f"{path}: {array.dtype} {array.shape}, its record says "
                         f"{entry['dtype']} {want} (overwritten)")
    if entry.get("digest"):
        if full_digest(path) != entry["digest"]:
            raise ValueError(f"{path}: content differs from its record's digest (overwritten)")
    elif sampled_digest(path) != entry["sampled_digest"]:
        raise ValueError(f"{path}: content differs from its record's digest (overwritten)")
    if num_centroids is not None and array.size:
        top = int(array.max())
        if top >= num_centroids:
            row = int(np.argwhere(np.asarray(array) >= num_centroids)[0][0])
            raise ValueError(f"{path}: code {top} at row {row} is out of range (the codebooks "
                             f"hold {num_centroids} centroids)")


def list_lines(out_dir: Path, stream: str, names: Sequence[str],
               records: Iterable[dict], shard_size: int) -> str:
    """The stream's list: each utterance's shard file and rows (whole files when unsharded)."""
    lines = []
    for name, rec in zip(names, records):
        path = shard_file(out_dir, stream, name).resolve()
        start = 0
        for uttid, frames in rec["utts"]:
            lines.append(f"{uttid} {path}\n" if shard_size <= 0
                         else f"{uttid} {path}:{start}:{start + frames}\n")
            start += frames
    return "".join(lines)


def check_sharded_list(scp: Path, table: Dict[str, str], dump_dir: Path,
                       num_centroids: Optional[int] = None,
                       checked: Optional[set] = None) -> Dict[str, int]:
    """A dump's list (``<stream>.scp``) against the dump's shard records: every line is the rows
    its record gives, and every shard file it names passes :func:`check_shard_file` (each
    once: ``checked`` collects the files done). Returns frames per utterance."""
    from espnet2_stacking.data.cropped_npy import parse_rows

    stream = scp.stem
    checked = set() if checked is None else checked
    records = {}
    frames = {}
    for uttid, value in table.items():
        path, start, stop = parse_rows(value)
        name = Path(path).stem
        if name not in records:
            if not record_path(dump_dir, name).is_file():
                raise ValueError(f"{scp}: utterance '{uttid}' points to {path}, which no shard "
                                 f"record of {dump_dir} describes")
            rec = read_record(dump_dir, name)
            rows, at = {}, 0
            for u, n in rec["utts"]:
                rows[u] = (at, at + n)
                at += n
            records[name] = (rec, rows)
        rec, rows = records[name]
        entry = rec["files"].get(stream)
        if entry is None or uttid not in rows:
            raise ValueError(f"{scp}: utterance '{uttid}' is not in shard {path} by its record "
                             f"{record_path(dump_dir, name)} (an index that does not match its shard)")
        want = rows[uttid]
        if start is not None and (start, stop) != want:
            raise ValueError(f"{scp}: utterance '{uttid}' has rows {start}:{stop} of {path} but "
                             f"the shard's record gives {want[0]}:{want[1]} (an index that "
                             "does not match its shard)")
        if path not in checked:
            check_shard_file(Path(path), entry, num_centroids)
            checked.add(path)
        frames[uttid] = want[1] - want[0]
    return frames
