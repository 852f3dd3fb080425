"""WER and CER of ESPnet decoding output, in Python (the pip wheel ships no sclite).

Inputs are Kaldi ``text`` files, one ``<utt-id> <words ...>`` per line: the reference
(``data/<set>/text``) and the hypotheses ``asr_inference`` writes to
``<decode_dir>/1best_recog/text`` (a line with an id and nothing else is an empty hypothesis).

Units follow ESPnet's recipes: words split on whitespace; characters of the words joined by
single spaces, the spaces counted as tokens (ESPnet scores ``<space>`` too). No case or
punctuation normalisation: reference and token list come from the same text.

Counts: the total errors of an utterance are its Levenshtein distance (``editdistance``); the
split into substitutions, deletions and insertions is one minimum-cost alignment with unit
costs (RapidFuzz's editops, checked to agree with that distance). sclite weighs substitutions
above insertions and deletions, so its split (rarely its total) can differ a little.

Missing hypotheses: by default a reference utterance without a hypothesis is an error that
names it (a failed decoding job must not pass as a good score). With
``missing="deletion"`` they are scored as empty hypotheses (every reference token deleted),
logged by id and counted in :attr:`ErrorCounts.missing`, which RESULTS.md reports. A
hypothesis for an utterance the reference lacks is always an error (a wrong reference file).
"""

import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Tuple

import editdistance
from rapidfuzz.distance import Levenshtein
from typeguard import typechecked

from espnet2_stacking.core.text import short_list
from espnet2_stacking.data.kaldi_dir import read_scp

logger = logging.getLogger(__name__)

UNITS = ("word", "char")
MISSING_POLICIES = ("error", "deletion")
HYP_TEXT = Path("1best_recog") / "text"  # asr_inference's layout under its --output_dir


@dataclasses.dataclass
class ErrorCounts:
    """Counts over a set of utterances, as sclite's summary table.

    Attributes:
        snt: utterances; wrd: reference tokens (words or characters);
        corr, sub, dele, ins: correct, substituted, deleted, inserted tokens;
        s_err: utterances with at least one error; missing: utterances with no hypothesis
        (scored as all deletions).
    """

    snt: int = 0
    wrd: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    s_err: int = 0
    missing: int = 0

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def error_rate(self) -> float:
        """Errors per reference token (WER or CER as a fraction; inf with no reference)."""
        return self.err / self.wrd if self.wrd else (0.0 if self.err == 0 else float("inf"))

    def percentages(self) -> Dict[str, float]:
        """Corr/Sub/Del/Ins/Err in % of reference tokens, S.Err in % of utterances."""
        w, s = max(self.wrd, 1), max(self.snt, 1)
        return {"Corr": 100 * self.corr / w, "Sub": 100 * self.sub / w, "Del": 100 * self.dele / w,
                "Ins": 100 * self.ins / w, "Err": 100 * self.err / w, "S.Err": 100 * self.s_err / s}

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "err": self.err, "error_rate": self.error_rate}


@typechecked
def read_text(path: Path) -> Dict[str, str]:
    """A Kaldi text file as {utt_id: transcript} ("" for an id alone); duplicates are an error."""
    return read_scp(path, allow_empty=True)


@typechecked
def tokens(text: str, unit: str) -> List[str]:
    """Words, or characters with single spaces between words (spaces are tokens)."""
    words = text.split()
    if unit == "word":
        return words
    if unit == "char":
        return list(" ".join(words))
    raise ValueError(f"unit '{unit}' is not one of {UNITS}")


@typechecked
def align_counts(ref: List[str], hyp: List[str]) -> Tuple[int, int, int, int]:
    """(correct, substitutions, deletions, insertions) of one utterance."""
    ops = Levenshtein.editops(ref, hyp)
    sub = sum(op.tag == "replace" for op in ops)
    dele = sum(op.tag == "delete" for op in ops)
    ins = sum(op.tag == "insert" for op in ops)
    distance = editdistance.eval(ref, hyp)
    if sub + dele + ins != distance:  # both are minimum edit distances: they must agree
        raise RuntimeError(f"alignment of {ref!r} / {hyp!r} has {sub + dele + ins} edits, "
                           f"the edit distance is {distance}")
    return len(ref) - sub - dele, sub, dele, ins


@typechecked
def score(ref: Dict[str, str], hyp: Dict[str, str], unit: str = "word", *,
          missing: str = "error", ref_name: str = "reference",
          hyp_name: str = "hypotheses") -> ErrorCounts:
    """Error counts of ``hyp`` against ``ref`` (both {utt_id: transcript}).

    Args:
        unit: "word" (WER) or "char" (CER).
        missing: "error" (default) or "deletion" for reference utterances with no
            hypothesis; see the module docstring.
        ref_name, hyp_name: the files the dicts came from, for error messages.
    """
    if unit not in UNITS:
        raise ValueError(f"unit '{unit}' is not one of {UNITS}")
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing '{missing}' is not one of {MISSING_POLICIES}")
    extra = sorted(set(hyp) - set(ref))
    if extra:
        raise ValueError(f"{hyp_name} has {len(extra)} utterance(s) that {ref_name} lacks: "
                         f"{short_list(extra)} (wrong reference?)")
    absent = sorted(set(ref) - set(hyp))
    if absent and missing == "error":
        raise ValueError(f"{hyp_name} has no hypothesis for {len(absent)} utterance(s) of "
                         f"{ref_name}: {short_list(absent)} (did a decoding job fail?)")
    if absent:
        logger.warning(f"{hyp_name}: {len(absent)} utterance(s) without a hypothesis are "
                       f"scored as all deletions: {short_list(absent, 20)}")
    counts = ErrorCounts(missing=len(absent))
    for uid, ref_text in ref.items():
        r = tokens(ref_text, unit)
        corr, sub, dele, ins = align_counts(r, tokens(hyp.get(uid, ""), unit))
        counts.snt += 1
        counts.wrd += len(r)
        counts.corr += corr
        counts.sub += sub
        counts.dele += dele
        counts.ins += ins
        counts.s_err += int(sub + dele + ins > 0)
    return counts


@typechecked
def score_decode_dir(ref_text: Path, decode_dir: Path,
                     missing: str = "error") -> Dict[str, ErrorCounts]:
    """{"wer": ..., "cer": ...} of ``<decode_dir>/1best_recog/text`` against ``ref_text``."""
    hyp_text = decode_dir / HYP_TEXT
    if not hyp_text.is_file():
        raise FileNotFoundError(f"{hyp_text} not found: did decoding (stage 6) finish for "
                                f"{decode_dir}?")
    ref, hyp = read_text(ref_text), read_text(hyp_text)
    names = {"ref_name": str(ref_text), "hyp_name": str(hyp_text)}
    return {"wer": score(ref, hyp, "word", missing=missing, **names),
            "cer": score(ref, hyp, "char", missing=missing, **names)}


CLS_HYP_TEXT = Path("prediction") / "text"  # cls_inference's layout under its --output_dir


@typechecked
def score_classification_dir(ref_labels: Path, decode_dir: Path,
                             missing: str = "error") -> ErrorCounts:
    """Counts of ``<decode_dir>/prediction/text`` (one label per utterance) against
    ``ref_labels`` (e.g. ``utt2spk`` for speaker ID): accuracy is ``corr / snt``.

    One label is one token, so the word-level counts are the classification counts: a wrong
    label is a substitution, a missing or empty prediction a deletion.
    """
    hyp_text = decode_dir / CLS_HYP_TEXT
    if not hyp_text.is_file():
        raise FileNotFoundError(f"{hyp_text} not found: did inference (stage 6) finish for "
                                f"{decode_dir}?")
    ref, hyp = read_text(ref_labels), read_text(hyp_text)
    for name, table in ((ref_labels, ref), (hyp_text, hyp)):
        multi = sorted(u for u, label in table.items() if len(label.split()) > 1)
        if multi:
            raise ValueError(f"{name}: {len(multi)} utterance(s) have more than one label: "
                             f"{short_list(multi)}")
    return score(ref, hyp, "word", missing=missing, ref_name=str(ref_labels),
                 hyp_name=str(hyp_text))
