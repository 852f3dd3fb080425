"""Write, read and validate Kaldi-style data dirs; keep the books on bad utterances.

A data dir holds five files, one ``<utt_id> <value>`` line per utterance (``spk2utt``: one
``<spk> <utt> <utt> ...`` line per speaker), every file sorted by its first column in byte
order (Kaldi's ``LC_ALL=C sort``):

    wav.scp          <utt> <absolute audio path>   (ESPnet's ``sound`` type)
    text             <utt> <TRANSCRIPT>
    utt2spk          <utt> <spk>
    spk2utt          <spk> <utt> <utt> ...
    utt2num_samples  <utt> <samples>               (ESPnet's shape file)

Utterance ids start with their speaker id, so sorting by utterance and by speaker agree; the
writer and the validator check that.

Completeness: :func:`write_kaldi_dir` first deletes ``wav.scp`` and ``summary.json``, then
writes every file under a temporary name in the same dir and renames it, ``wav.scp`` last; the
caller writes ``summary.json`` after it. A killed run therefore leaves either the old complete
dir or a dir without ``wav.scp`` (and without ``summary.json``), never a mix that looks done.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from typeguard import typechecked

from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.audio_check import AudioError, check_audio
from espnet2_stacking.data.utterances import Utterance

logger = logging.getLogger(__name__)

KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples")
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2num_samples")
SUMMARY = "summary.json"
ON_BAD_UTT = ("error", "skip")


class DataPrepError(ValueError):
    """A bad utterance under ``--on_bad_utt error``, or an inconsistent data dir."""


@dataclass(frozen=True)
class BadUtterance:
    """An utterance that cannot go into a data dir, and why.

    ``reason`` is a short fixed category (counted in summaries, e.g. "wrong sample rate");
    ``detail`` says what exactly was found.
    """

    utt_id: str
    path: str
    reason: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.path}: utterance {self.utt_id}: {self.reason}: {self.detail}"

    @classmethod
    def from_audio_error(cls, utt_id: str, err: AudioError) -> "BadUtterance":
        return cls(utt_id, err.path, err.reason, err.detail)


class BadUttLog:
    """Applies ``--on_bad_utt``: ``error`` raises at the first bad utterance, ``skip`` logs
    each one and keeps it for the summary (nothing is dropped silently)."""

    @typechecked
    def __init__(self, on_bad_utt: str):
        if on_bad_utt not in ON_BAD_UTT:
            raise ValueError(f"on_bad_utt must be one of {ON_BAD_UTT}, got '{on_bad_utt}'")
        self.on_bad_utt = on_bad_utt
        self.skipped: List[BadUtterance] = []

    def add(self, bad: BadUtterance) -> None:
        if self.on_bad_utt == "error":
            raise DataPrepError(
                f"{bad.message} (pass --on_bad_utt skip to leave such utterances out)"
            )
        logger.warning("skipping %s", bad.message)
        self.skipped.append(bad)

    def counts(self) -> Dict[str, int]:
        return dict(sorted(Counter(b.reason for b in self.skipped).items()))


@typechecked
def summarize(utts: Sequence[Utterance], log: BadUttLog, fs: int) -> dict:
    """Counts of a finished data dir: utterances, hours, speakers, skipped with reasons."""
    return {
        "utterances": len(utts),
        "hours": round(sum(u.num_samples for u in utts) / fs / 3600, 4),
        "speakers": len({u.speaker for u in utts}),
        "skipped": len(log.skipped),
        "skipped_by_reason": log.counts(),
        "skipped_utterances": [
            {"utt_id": b.utt_id, "path": b.path, "reason": b.reason, "detail": b.detail}
            for b in log.skipped
        ],
    }


@typechecked
def write_summary(out_dir: Union[str, Path], summary: dict) -> None:
    atomic_write_text(Path(out_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")


def _check_token(file: str, utt_id: str, what: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise DataPrepError(f"{file}: utterance {utt_id}: {what} {value!r} is empty or has "
                            "whitespace")


def _first_difference(a: List[str], b: List[str]) -> str:
    for x, y in zip(a, b):
        if x != y:
            return x
    return a[len(b)] if len(a) > len(b) else b[len(a)]


def _check_sort_agreement(where: str, utt2spk: Dict[str, str]) -> None:
    """Kaldi's rule: in utterance order, each speaker's utterances form one block and the
    blocks come in speaker order (holds when utterance ids start with the speaker id)."""
    seen = set()
    prev = None
    for utt in sorted(utt2spk):
        spk = utt2spk[utt]
        if spk != prev:
            if spk in seen or (prev is not None and spk < prev):
                raise DataPrepError(
                    f"{where}: utterance {utt}: speaker '{spk}' out of order: sorting by "
                    "utterance and by speaker disagree (start utterance ids with the speaker id)"
                )
            seen.add(spk)
            prev = spk


@typechecked
def write_kaldi_dir(out_dir: Union[str, Path], utts: Sequence[Utterance]) -> None:
    """Write the five files of a data dir from ``utts`` (any order), ``wav.scp`` last.

    Raises DataPrepError (naming the utterance) on duplicate ids, ids or speakers with
    whitespace, empty transcripts, non-positive lengths, or speaker/utterance orders that
    disagree. Nothing is written then.
    """
    out_dir = Path(out_dir)
    rows = sorted(utts, key=lambda u: u.utt_id)
    if not rows:
        raise DataPrepError(f"{out_dir}: no utterances to write")
    utt2spk: Dict[str, str] = {}
    for u in rows:
        if u.speaker is None or u.text is None:
            raise DataPrepError(f"{out_dir}: utterance {u.utt_id}: no speaker or transcript")
        _check_token(str(out_dir), u.utt_id, "utterance id", u.utt_id)
        _check_token(str(out_dir), u.utt_id, "speaker id", u.speaker)
        if u.utt_id in utt2spk:
            raise DataPrepError(f"{out_dir}: utterance {u.utt_id}: duplicate utterance id")
        if not u.text.strip() or "\n" in u.text:
            raise DataPrepError(f"{out_dir}: utterance {u.utt_id}: empty or multi-line text")
        if "\n" in u.path or not u.path:
            raise DataPrepError(f"{out_dir}: utterance {u.utt_id}: bad audio path {u.path!r}")
        if u.num_samples <= 0:
            raise DataPrepError(f"{out_dir}: utterance {u.utt_id}: {u.num_samples} samples")
        utt2spk[u.utt_id] = u.speaker
    _check_sort_agreement(str(out_dir), utt2spk)

    spk2utt: Dict[str, List[str]] = {}
    for u in rows:
        spk2utt.setdefault(u.speaker, []).append(u.utt_id)
    contents = {
        "text": "".join(f"{u.utt_id} {' '.join(u.text.split())}\n" for u in rows),
        "utt2spk": "".join(f"{u.utt_id} {u.speaker}\n" for u in rows),
        "spk2utt": "".join(f"{s} {' '.join(spk2utt[s])}\n" for s in sorted(spk2utt)),
        "utt2num_samples": "".join(f"{u.utt_id} {u.num_samples}\n" for u in rows),
        "wav.scp": "".join(f"{u.utt_id} {u.path}\n" for u in rows),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("wav.scp", SUMMARY):  # the dir no longer looks complete from here on
        (out_dir / stale).unlink(missing_ok=True)
    for name, text in contents.items():  # dict order puts wav.scp last
        atomic_write_text(out_dir / name, text)


def text_lines(path: Path) -> Iterable[tuple]:
    """(line number, line) of a UTF-8 text file; a line that is not UTF-8 (a binary file, a
    Latin-1 transcript) is a DataPrepError naming the file and the line."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataPrepError(f"{path}: line {lineno}: not UTF-8 text ({e.reason} at byte "
                                    f"{e.start}: {raw[:60]!r})") from None


def _read_lines(path: Path) -> Iterable[tuple]:
    for lineno, line in text_lines(path):
        parts = line.rstrip("\n").split(maxsplit=1)
        if len(parts) != 2 or not parts[1].strip():
            key = parts[0] if parts else "<blank line>"
            raise DataPrepError(f"{path}: line {lineno}: {key}: expected '<id> <value>'"
                                + (" (empty transcript)" if path.name == "text" else ""))
        yield lineno, parts[0], parts[1]


def read_scp(path: Path, allow_empty: bool = False) -> Dict[str, str]:
    """``utt value`` lines (Kaldi scp, text, shape files) as a dict; a malformed or repeated
    line is an error naming it. ``allow_empty``: a line with an id alone maps to "" (an empty
    transcript or hypothesis)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    table: Dict[str, str] = {}
    for lineno, line in text_lines(path):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2 and not allow_empty:
            raise ValueError(f"{path}:{lineno}: expected '<utt> <value>', got {line.strip()!r}")
        if parts[0] in table:
            raise ValueError(f"{path}:{lineno}: utterance '{parts[0]}' is listed twice")
        table[parts[0]] = parts[1] if len(parts) == 2 else ""
    return table


@typechecked
def read_kaldi_dir(
    path: Union[str, Path], required: Sequence[str] = ("wav.scp",)
) -> Dict[str, dict]:
    """Read the data-dir files that exist, keyed by file name, in file order.

    Returns e.g. ``{"wav.scp": {utt: path}, "text": {utt: text}, "utt2spk": {utt: spk},
    "spk2utt": {spk: [utt, ...]}, "utt2num_samples": {utt: int}}``; absent optional files are
    absent keys. Raises DataPrepError on a missing required file, a malformed line, a
    duplicate id or a non-integer length, naming the file and the id.
    """
    path = Path(path)
    out: Dict[str, dict] = {}
    for name in KALDI_FILES:
        file = path / name
        if not file.exists():
            if name in required:
                raise DataPrepError(f"{file}: missing")
            continue
        table: dict = {}
        for lineno, key, value in _read_lines(file):
            if key in table:
                raise DataPrepError(f"{file}: line {lineno}: {key}: duplicate id")
            if name == "spk2utt":
                table[key] = value.split()
            elif name == "utt2num_samples":
                try:
                    table[key] = int(value)
                except ValueError:
                    raise DataPrepError(f"{file}: line {lineno}: utterance {key}: "
                                        f"'{value}' is not an integer")
            else:
                table[key] = value
        out[name] = table
    return out


@typechecked
def validate_kaldi_dir(
    path: Union[str, Path],
    required: Sequence[str] = KALDI_FILES,
    fs: Optional[int] = None,
) -> Dict[str, dict]:
    """Check a data dir and return it as :func:`read_kaldi_dir` does.

    Checks: required files present; each file sorted with unique ids; the same utterance ids
    in wav.scp, text, utt2spk and utt2num_samples (those present); positive lengths; spk2utt
    the exact inverse of utt2spk, each list sorted; utterance and speaker orders agree. With
    ``fs``, also opens every audio file (header and last frames) and checks sample rate, mono,
    non-zero length and that its length equals utt2num_samples. Raises DataPrepError naming
    the file and the offending utterance.
    """
    path = Path(path)
    data = read_kaldi_dir(path, required=required)
    for name, table in data.items():
        keys = list(table)
        for prev, key in zip(keys, keys[1:]):
            if key <= prev:
                raise DataPrepError(f"{path / name}: {key}: not sorted (comes after {prev}; "
                                    "sort with LC_ALL=C)")
    present = [n for n in UTT_FILES if n in data]
    if present:
        ref = present[0]
        for name in present[1:]:
            for utt in data[name]:
                if utt not in data[ref]:
                    raise DataPrepError(f"{path / name}: utterance {utt}: not in {ref}")
            for utt in data[ref]:
                if utt not in data[name]:
                    raise DataPrepError(f"{path / name}: utterance {utt}: missing (it is in "
                                        f"{ref})")
    for utt, n in data.get("utt2num_samples", {}).items():
        if n <= 0:
            raise DataPrepError(f"{path / 'utt2num_samples'}: utterance {utt}: {n} samples")
    if "utt2spk" in data:
        _check_sort_agreement(str(path / "utt2spk"), data["utt2spk"])
    if "spk2utt" in data:
        if "utt2spk" not in data:
            raise DataPrepError(f"{path / 'spk2utt'}: present without utt2spk")
        expected: Dict[str, List[str]] = {}
        for utt, spk in data["utt2spk"].items():
            expected.setdefault(spk, []).append(utt)
        for spk, utts in data["spk2utt"].items():
            if spk not in expected:
                raise DataPrepError(f"{path / 'spk2utt'}: speaker {spk}: not in utt2spk")
            if utts != expected[spk]:
                bad = _first_difference(utts, expected[spk])
                raise DataPrepError(f"{path / 'spk2utt'}: speaker {spk}: utterance {bad}: "
                                    "list disagrees with utt2spk (or is not sorted)")
        for spk, utts in expected.items():
            if spk not in data["spk2utt"]:
                raise DataPrepError(f"{path / 'spk2utt'}: speaker {spk}: missing (utterance "
                                    f"{utts[0]} in utt2spk)")
    if fs is not None and "wav.scp" in data:
        lengths = data.get("utt2num_samples", {})
        for utt, audio in data["wav.scp"].items():
            try:
                n = check_audio(audio, fs)
            except AudioError as e:
                raise DataPrepError(BadUtterance.from_audio_error(utt, e).message)
            if utt in lengths and lengths[utt] != n:
                raise DataPrepError(f"{path / 'utt2num_samples'}: utterance {utt}: says "
                                    f"{lengths[utt]} samples, {audio} has {n}")
    return data


@typechecked
def format_summaries(summaries: Dict[str, dict], speakers: str = "speakers") -> str:
    """A small table of :func:`summarize` results, one row per data dir."""
    rows = [("data dir", "utterances", "hours", speakers, "skipped")]
    for name, s in summaries.items():
        reasons = ", ".join(f"{r}: {n}" for r, n in s["skipped_by_reason"].items())
        rows.append((name, str(s["utterances"]), f"{s['hours']:.3f}", str(s["speakers"]),
                     f"{s['skipped']}" + (f" ({reasons})" if reasons else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4]
                     for r in rows)


def read_data_dir(data_dir: Path) -> List[Utterance]:
    """wav.scp + utt2num_samples of a Kaldi-style dir, checked against each other."""
    tables = read_kaldi_dir(data_dir, required=("wav.scp", "utt2num_samples"))
    wavs, lens = tables["wav.scp"], tables["utt2num_samples"]
    if set(wavs) != set(lens):
        only_wav = sorted(set(wavs) - set(lens))[:3]
        only_len = sorted(set(lens) - set(wavs))[:3]
        raise ValueError(
            f"{data_dir}: wav.scp and utt2num_samples disagree on utterance ids "
            f"(only in wav.scp: {only_wav}, only in utt2num_samples: {only_len})"
        )
    utts = []
    for uttid, path in wavs.items():
        if path.endswith("|"):
            raise ValueError(
                f"{data_dir}/wav.scp: utterance '{uttid}' is a pipe command; the dump reads "
                "audio files directly (convert them to wav/flac first)"
            )
        utts.append(Utterance(uttid, path, int(lens[uttid])))
    return sorted(utts, key=lambda u: u.utt_id)
