"""Read LibriSpeech's own layout into one Kaldi-style data dir (no conversion, no download).

Layout read: ``<root>/<set>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and
``<root>/<set>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` (``<utt id> <TEXT>``
lines). ``wav.scp`` points at the .flac files, which ESPnet's ``sound`` type reads through
soundfile; ``utt2num_samples`` comes from the FLAC headers. The speaker id is the speaker
directory's name, and LibriSpeech utterance ids start with it.
"""

import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from tqdm import tqdm
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.audio_check import MISSING, AudioError, check_audio, parallel_imap
from espnet2_stacking.data.kaldi_dir import (
    BadUtterance,
    BadUttLog,
    DataPrepError,
    Utterance,
    summarize,
    write_kaldi_dir,
    write_summary,
)

NO_TRANSCRIPT = "audio without transcript"
EMPTY_TRANSCRIPT = "empty transcript"


@dataclass(frozen=True)
class _Listed:
    utt_id: str
    speaker: str
    path: str
    text: str


def _read_transcript(trans: Path, seen: Dict[str, Path]) -> Dict[str, str]:
    texts: Dict[str, str] = {}
    with trans.open(encoding="utf-8") as f:
        for line in f:
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            utt = parts[0]
            if utt in seen:
                raise DataPrepError(f"{trans}: utterance {utt}: duplicate (also in {seen[utt]})")
            seen[utt] = trans
            texts[utt] = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return texts


def _list_chapter(chapter: Path, speaker: str, seen: Dict[str, Path],
                  log: BadUttLog) -> List[_Listed]:
    trans = chapter / f"{speaker}-{chapter.name}.trans.txt"
    texts = _read_transcript(trans, seen) if trans.is_file() else {}
    flacs = {e.name[: -len(".flac")]: e.path for e in os.scandir(chapter)
             if e.name.endswith(".flac")}
    out = []
    for utt in sorted(set(texts) | set(flacs)):
        if utt not in flacs:
            log.add(BadUtterance(utt, str(chapter / f"{utt}.flac"), MISSING,
                                 f"listed in {trans.name}, no such file"))
        elif utt not in texts:
            where = f"no line in {trans.name}" if trans.is_file() else f"no {trans.name}"
            log.add(BadUtterance(utt, flacs[utt], NO_TRANSCRIPT, where))
        elif not texts[utt]:
            log.add(BadUtterance(utt, str(trans), EMPTY_TRANSCRIPT, "no words after the id"))
        else:
            out.append(_Listed(utt, speaker, os.path.abspath(flacs[utt]), texts[utt]))
    return out


def _sorted_dirs(path: Path) -> List[Path]:
    return sorted(Path(e.path) for e in os.scandir(path) if e.is_dir())


@typechecked
def list_librispeech(root: Union[str, Path], sets: Sequence[str], log: BadUttLog) -> List[_Listed]:
    """Utterances of ``sets`` with a transcript and a .flac file; the others go to ``log``."""
    seen: Dict[str, Path] = {}
    out: List[_Listed] = []
    for name in sets:
        set_dir = Path(root) / name
        if not set_dir.is_dir():
            raise DataPrepError(f"{set_dir}: LibriSpeech set '{name}' not found")
        for spk_dir in tqdm(_sorted_dirs(set_dir), desc=f"listing {name}", unit="speaker"):
            for chapter in _sorted_dirs(spk_dir):
                out.extend(_list_chapter(chapter, spk_dir.name, seen, log))
    return out


def _check(path: str) -> Union[int, AudioError]:
    try:
        return check_audio(path, SAMPLE_RATE)
    except AudioError as e:
        return e


@typechecked
def prepare_librispeech(
    librispeech_dir: Union[str, Path],
    sets: Sequence[str],
    out_dir: Union[str, Path],
    nj: int = 1,
    on_bad_utt: str = "error",
    cluster: Optional[dict] = None,
) -> dict:
    """Write ``out_dir`` (one data dir merging ``sets``) and its summary.json; return the summary.

    Every utterance's audio is checked (16 kHz, mono, non-empty, readable to its last frame).
    ``on_bad_utt="error"`` raises DataPrepError at the first bad utterance, naming its file;
    ``"skip"`` logs and counts each one. ``cluster``: a job class of the site's parallel
    config; a cluster class checks the files on its workers (``nj`` local processes otherwise).

    Example:
        >>> prepare_librispeech("/data/LibriSpeech", ["dev-clean"], "data/dev_clean", nj=4)
    """
    log = BadUttLog(on_bad_utt)
    listed = list_librispeech(librispeech_dir, sets, log)
    if not listed and not log.skipped:
        raise DataPrepError(f"{librispeech_dir}: no utterances found in {', '.join(sets)}")
    utts: List[Utterance] = []
    with closing(parallel_imap(_check, [u.path for u in listed], nj, "checking audio",
                                 cluster)) as res:
        for u, n in zip(listed, res):
            if isinstance(n, AudioError):
                log.add(BadUtterance.from_audio_error(u.utt_id, n))
            else:
                utts.append(Utterance(u.utt_id, u.path, n, speaker=u.speaker, text=u.text))
    if not utts:
        raise DataPrepError(f"{out_dir}: every utterance was skipped ({log.counts()})")
    write_kaldi_dir(out_dir, utts)
    summary = {"sets": list(sets), **summarize(utts, log, SAMPLE_RATE)}
    write_summary(out_dir, summary)
    return summary
