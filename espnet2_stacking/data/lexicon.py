"""Phone transcripts from a pronunciation lexicon: phoneme recognition on a corpus with word
transcripts only (LibriSpeech).

Lexicon: one entry a line, ``WORD PHONE PHONE ...`` separated by whitespace, as openslr 11's
``librispeech-lexicon.txt`` and CMUdict (``;;;`` comment lines; alternates written
``WORD(2)``). A word's first pronunciation is used, so every utterance has one target; later
ones are counted, not used. Words match in upper case (LibriSpeech transcripts are upper
case). ``strip_stress`` drops ARPAbet stress digits (``AH0`` -> ``AH``).

A word the lexicon lacks cannot be turned into phones without guessing: :func:`phone_texts`
returns the utterances that have one, with their words, and :func:`write_phone_texts` writes
nothing when any dir has one (the user extends the lexicon, e.g. with a G2P, and reruns).
"""

import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from typeguard import typechecked

from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.kaldi_dir import DataPrepError, read_scp, text_lines

ALTERNATE = re.compile(r"\(\d+\)$")  # CMUdict's WORD(2)
STRESS = re.compile(r"(?<=[A-Za-z])[012]$")


@typechecked
def read_lexicon(path: Path, strip_stress: bool = False) -> Tuple[Dict[str, List[str]], int]:
    """(word -> phones, number of alternate pronunciations not used). A line with a word and
    no phone is an error naming it."""
    if not path.is_file():
        raise DataPrepError(f"lexicon {path} not found")
    lexicon: Dict[str, List[str]] = {}
    alternates = 0
    for lineno, line in text_lines(path):
        if not line.strip() or line.startswith(";;;"):
            continue
        word, *phones = line.split()
        if not phones:
            raise DataPrepError(f"{path}:{lineno}: word '{word}' has no phones")
        word = ALTERNATE.sub("", word).upper()
        if word in lexicon:
            alternates += 1
            continue
        lexicon[word] = [STRESS.sub("", p) for p in phones] if strip_stress else phones
    if not lexicon:
        raise DataPrepError(f"lexicon {path} has no entry")
    return lexicon, alternates


@typechecked
def phone_texts(text: Dict[str, str], lexicon: Dict[str, List[str]]
                ) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """(utterance -> phones joined by spaces, utterance -> its words the lexicon lacks, in
    order, "<empty transcript>" for an utterance without words). An utterance of the second
    has no entry in the first."""
    phones, oov = {}, {}
    for utt, words in text.items():
        missing = [w for w in words.split() if w.upper() not in lexicon]
        if missing or not words.split():
            oov[utt] = missing or ["<empty transcript>"]
            continue
        phones[utt] = " ".join(p for w in words.split() for p in lexicon[w.upper()])
    return phones, oov


@typechecked
def write_phone_texts(data_dirs: Sequence[Path], lexicon: Dict[str, List[str]],
                      out_name: str = "text_phn") -> Dict[Path, Dict[str, List[str]]]:
    """Write ``<dir>/<out_name>`` from ``<dir>/text`` for every dir, or, when an utterance of
    any dir has a word the lexicon lacks, none of them: then each such dir gets
    ``<dir>/<out_name>.oov`` (``<utt> <missing words>``) and the result maps it to its OOV
    utterances (empty: everything written)."""
    results = {}
    for d in data_dirs:
        try:
            text = read_scp(d / "text", allow_empty=True)
        except (OSError, ValueError) as e:
            raise DataPrepError(str(e)) from None
        results[d] = phone_texts(text, lexicon)
    failed = {d: oov for d, (_, oov) in results.items() if oov}
    for d in data_dirs:
        (d / f"{out_name}.oov").unlink(missing_ok=True)
    if failed:
        for d, oov in failed.items():
            atomic_write_text(d / f"{out_name}.oov",
                              "".join(f"{u} {' '.join(ws)}\n" for u, ws in sorted(oov.items())))
        return failed
    for d, (phones, _) in results.items():
        atomic_write_text(d / out_name, "".join(f"{u} {p}\n" for u, p in sorted(phones.items())))
    return {}
