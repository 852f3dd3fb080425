"""Synthesise the demo corpus with espeak-ng: train/dev/test Kaldi dirs, test voices unseen.

Text: sentences of 4-15 words from a small grammar (statements, questions, commands,
compounds) over the shipped vocabulary ``demo_words.txt`` (about 1200 entries, 2600 word
forms), upper case like LibriSpeech: only A-Z, apostrophe and space.

Voices: each English accent of espeak-ng crossed with voice variants (``en-gb-x-rp+m3``);
a voice is a speaker. Voices are shuffled by the seed and split into disjoint test, dev and
train sets. Each utterance gets its own random speed (words per minute) and pitch.

Audio: espeak-ng writes 22.05 kHz; sox resamples it to 16 kHz mono 16-bit (``-R``: its dither
is repeatable, so the same seed gives the same bytes; ``-G``: no clipping). Each wav is written
under a temporary name and renamed; its name holds a digest of voice, speed, pitch, text and
the sox options, so a rerun reuses exactly the files that are complete and still wanted.

Size: by duration, utterance after utterance in a fixed order until the split reaches its
target (the utterance that crosses the target is the last one), or a fixed number of
utterances per split. Either way the corpus depends only on the seed and the options.
"""

import hashlib
import logging
import math
import os
import random
import shutil
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_output, atomic_write_text
from espnet2_stacking.data.audio_check import AudioError, check_audio, parallel_imap
from espnet2_stacking.data.kaldi_dir import (
    BadUtterance,
    BadUttLog,
    DataPrepError,
    Utterance,
    summarize,
    write_kaldi_dir,
    write_summary,
)
from espnet2_stacking.data.speaker_split import SID_SPLITS, speakers_missing_from, split_by_speaker

logger = logging.getLogger(__name__)

WORDS_FILE = Path(__file__).with_name("demo_words.txt")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
SPLITS = ("train", "dev", "test")
SPEED_RANGE = (140, 200)  # espeak-ng -s, words per minute (its default is 175)
PITCH_RANGE = (30, 70)  # espeak-ng -p, 0-99 (its default is 50)
MIN_WORDS, MAX_WORDS = 4, 15
SYNTH_FAILED = "synthesis failed"
SOX_OPTIONS = ("-R", "-G", "-t", "wav", "-", "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
               "-e", "signed-integer")  # stdin wav -> 16 kHz mono 16-bit; then the output path
PHONE_TEXT = "text_phn"  # per split: "<utt_id> <IPA phones, space separated>", as `text`
TYPICAL_SECONDS = 3.0  # only sizes the first batch of a split

# The grammar's own words; everything else comes from WORDS_FILE.
SUBJECT_PRONOUNS = (("i", "1sg"), ("you", "pl"), ("he", "3sg"), ("she", "3sg"),
                    ("it", "3sg"), ("we", "pl"), ("they", "pl"))
OBJECT_PRONOUNS = ("me", "you", "him", "her", "it", "us", "them")
SG_DETS = ("the", "a", "this", "that", "my", "your", "his", "her", "our", "their", "every")
MASS_DETS = ("the", "some", "this", "that", "my", "your", "his", "her", "our", "their")
PL_DETS = ("the", "these", "those", "my", "your", "his", "her", "our", "their", "some",
           "many", "all the", "a few")
MODALS = ("will", "can", "could", "should", "must", "might", "would")
BE = {"1sg": ("am", "was"), "3sg": ("is", "was"), "pl": ("are", "were")}
DO = {"1sg": "do", "3sg": "does", "pl": "do"}
CONTRACTED_BE = {"i": "i'm", "you": "you're", "he": "he's", "she": "she's", "it": "it's",
                 "we": "we're", "they": "they're"}
NEGATIONS = {"1sg": ("don't", "didn't", "can't", "won't", "couldn't", "shouldn't"),
             "3sg": ("doesn't", "didn't", "can't", "won't", "couldn't", "shouldn't"),
             "pl": ("don't", "didn't", "can't", "won't", "couldn't", "shouldn't")}
INTENSIFIERS = ("very", "quite", "really", "so", "rather", "too")
CONJUNCTIONS = ("and", "but", "so", "because", "while", "when", "until", "although")
WH_WORDS = ("why", "where", "when", "how")
TIME_PHRASES = ("last night", "last week", "every morning", "every day", "next week",
                "this morning", "at night", "in the evening", "before dinner", "after school")
IMPERATIVE_OPENERS = ("please", "let's", "never", "always", "don't")
GRAMMAR_WORDS = {w for group in (
    [p for p, _ in SUBJECT_PRONOUNS], OBJECT_PRONOUNS, SG_DETS, MASS_DETS, PL_DETS, MODALS,
    [w for pair in BE.values() for w in pair], DO.values(), CONTRACTED_BE.values(),
    [w for ws in NEGATIONS.values() for w in ws], INTENSIFIERS, CONJUNCTIONS, WH_WORDS,
    TIME_PHRASES, IMPERATIVE_OPENERS, ["an", "there", "did", "on", "in", "and"],
) for phrase in group for w in phrase.split()}


@dataclass(frozen=True)
class Vocabulary:
    """The word lists of ``demo_words.txt`` (lower case)."""

    count_nouns: Tuple[Tuple[str, str], ...]  # (singular, plural)
    mass_nouns: Tuple[str, ...]
    verbs: Tuple[Tuple[str, str, str, str], ...]  # (base, third person, past, gerund)
    adjectives: Tuple[str, ...]
    adverbs: Tuple[str, ...]
    names: Tuple[str, ...]
    prepositions: Tuple[str, ...]
    numbers: Tuple[str, ...]
    days: Tuple[str, ...]
    months: Tuple[str, ...]

    @classmethod
    @typechecked
    def from_file(cls, path: Union[str, Path] = WORDS_FILE) -> "Vocabulary":
        arity = {"noun": 2, "verb": 4, "adj": 1, "adv": 1, "name": 1, "prep": 1, "num": 1,
                 "day": 1, "month": 1}
        rows: Dict[str, list] = {tag: [] for tag in arity}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                tag, *forms = line.split()
                if tag not in arity or len(forms) != arity[tag] or not all(
                        w == "-" or (w.isalpha() and w.isascii() and w.islower()) for w in forms):
                    raise ValueError(f"{path}: line {lineno}: bad entry {line.strip()!r}")
                rows[tag].append(tuple(forms) if arity[tag] > 1 else forms[0])
        return cls(
            count_nouns=tuple(n for n in rows["noun"] if n[1] != "-"),
            mass_nouns=tuple(n[0] for n in rows["noun"] if n[1] == "-"),
            verbs=tuple(rows["verb"]), adjectives=tuple(rows["adj"]),
            adverbs=tuple(rows["adv"]), names=tuple(rows["name"]),
            prepositions=tuple(rows["prep"]), numbers=tuple(rows["num"]),
            days=tuple(rows["day"]), months=tuple(rows["month"]),
        )

    def words(self) -> Set[str]:
        """Every word a sentence can contain, upper case."""
        forms = {w for n in self.count_nouns for w in n} | set(self.mass_nouns)
        forms |= {w for v in self.verbs for w in v}
        forms |= {f"{n}'s" for n in self.names}
        for group in (self.adjectives, self.adverbs, self.names, self.prepositions,
                      self.numbers, self.days, self.months):
            forms |= set(group)
        return {w.upper() for w in forms | GRAMMAR_WORDS}


class _Sentence:
    """One random sentence from ``rng``: call :meth:`make` (lower-case words, question?)."""

    def __init__(self, vocab: Vocabulary, rng: random.Random):
        self.v, self.r = vocab, rng

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def noun_phrase(self, plural: Optional[bool] = None) -> Tuple[List[str], bool]:
        v, r = self.v, self.r
        plural = self.chance(0.35) if plural is None else plural
        if not plural and self.chance(0.1):
            return [r.choice(v.names)], False
        if plural:
            noun = r.choice(v.count_nouns)[1]
            det = r.choice(v.numbers) if self.chance(0.3) else r.choice(PL_DETS)
        elif self.chance(0.1):
            noun, det = r.choice(v.mass_nouns), r.choice(MASS_DETS)
        else:
            noun = r.choice(v.count_nouns)[0]
            det = f"{r.choice(v.names)}'s" if self.chance(0.1) else r.choice(SG_DETS)
        adjectives = [r.choice(v.adjectives) for _ in range(self.chance(0.45) + self.chance(0.1))]
        words = det.split() + adjectives + [noun]
        if words[0] == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return words, plural

    def subject(self) -> Tuple[List[str], str]:
        if self.chance(0.25):
            pronoun, person = self.r.choice(SUBJECT_PRONOUNS)
            return [pronoun], person
        words, plural = self.noun_phrase()
        return words, "pl" if plural else "3sg"

    def object(self) -> List[str]:
        return [self.r.choice(OBJECT_PRONOUNS)] if self.chance(0.15) else self.noun_phrase()[0]

    def place(self) -> List[str]:
        prep = self.r.choice(self.v.prepositions)
        return [prep] + self.noun_phrase(plural=True if prep == "among" else None)[0]

    def tail(self) -> List[str]:
        """An optional adverb or time phrase at the end."""
        v, r = self.v, self.r
        x = r.random()
        if x < 0.25:
            return [r.choice(v.adverbs)]
        if x < 0.32:
            return ["on", r.choice(v.days)]
        if x < 0.36:
            return ["in", r.choice(v.months)]
        if x < 0.45:
            return r.choice(TIME_PHRASES).split()
        return []

    def tensed(self, person: str) -> str:
        base, third, past, _ = self.r.choice(self.v.verbs)
        if self.chance(0.55):
            return past
        return third if person == "3sg" else base

    def maybe(self, p: float, words: List[str]) -> List[str]:
        return words if self.chance(p) else []

    def statement(self) -> List[str]:
        r, v = self.r, self.v
        subj, person = self.subject()
        kind = r.randrange(8)
        if kind == 0:
            return subj + [self.tensed(person)] + self.object() + self.maybe(0.4, self.place()) \
                + self.tail()
        if kind == 1:
            return subj + [self.tensed(person)] + self.place() + self.tail()
        if kind == 2:
            return subj + [r.choice(MODALS), r.choice(v.verbs)[0]] + self.object() \
                + self.maybe(0.4, self.place())
        if kind == 3:
            rest = self.object() if self.chance(0.5) else self.place()
            return subj + [BE[person][1], r.choice(v.verbs)[3]] + rest + self.tail()
        if kind == 4:
            past = self.chance(0.5)
            if len(subj) == 1 and subj[0] in CONTRACTED_BE and not past:
                head = [CONTRACTED_BE[subj[0]]]
            else:
                head = subj + [BE[person][past]]
            adjective = self.maybe(0.3, [r.choice(INTENSIFIERS)]) + [r.choice(v.adjectives)]
            return head + adjective + self.maybe(0.3, ["and", r.choice(v.adjectives)])
        if kind == 5:
            plural = self.chance(0.4)
            verb = ("are", "were") if plural else ("is", "was")
            return ["there", r.choice(verb)] + self.noun_phrase(plural)[0] + self.place()
        if kind == 6:
            return subj + [r.choice(NEGATIONS[person]), r.choice(v.verbs)[0]] + self.object() \
                + self.tail()
        return subj + [self.tensed(person)] + self.object() + ["and", self.tensed(person)] \
            + self.place()

    def question(self) -> List[str]:
        r, v = self.r, self.v
        subj, person = self.subject()
        base = r.choice(v.verbs)[0]
        kind = r.randrange(5)
        if kind == 0:
            return ["did"] + subj + [base] + self.object() + self.maybe(0.4, self.place())
        if kind == 1:
            return [r.choice(WH_WORDS), "did"] + subj + [base] + self.object()
        if kind == 2:
            intensifier = self.maybe(0.3, [r.choice(INTENSIFIERS)])
            return [BE[person][self.chance(0.5)]] + subj + intensifier + [r.choice(v.adjectives)]
        if kind == 3:
            return self.maybe(0.4, [r.choice(WH_WORDS)]) + [r.choice(MODALS)] + subj + [base] \
                + self.object()
        return [DO[person]] + subj + [base] + self.object() + self.tail()

    def command(self) -> List[str]:
        r = self.r
        opener = self.maybe(0.6, [r.choice(IMPERATIVE_OPENERS)])
        return opener + [r.choice(self.v.verbs)[0]] + self.object() + self.maybe(0.5, self.place())

    def make(self) -> Tuple[List[str], bool]:
        while True:  # rejection keeps the grammar simple; nearly every draw fits
            x = self.r.random()
            if x < 0.15:
                words, question = self.question(), True
            elif x < 0.22:
                words, question = self.command(), False
            else:
                words, question = self.statement(), False
                if self.chance(0.2):
                    words = words + [self.r.choice(CONJUNCTIONS)] + self.statement()
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                return words, question


@typechecked
def make_sentence(vocab: Vocabulary, rng: random.Random) -> Tuple[str, str]:
    """(transcript, prompt): ``"THE OLD DOG SLEPT"`` and what espeak-ng reads,
    ``"the old dog slept."``."""
    words, question = _Sentence(vocab, rng).make()
    return " ".join(words).upper(), " ".join(words) + ("?" if question else ".")


@dataclass(frozen=True)
class DemoUtt:
    """One planned utterance: what to say, with which voice, speed and pitch."""

    utt_id: str
    speaker: str
    voice: str  # espeak-ng -v argument, e.g. "en-gb-x-rp+m3"
    text: str
    prompt: str
    speed: int
    pitch: int

    @property
    def file_name(self) -> str:
        spec = f"{self.voice}|{self.speed}|{self.pitch}|{self.prompt}|{' '.join(SOX_OPTIONS)}"
        return f"{self.utt_id}-{hashlib.sha1(spec.encode()).hexdigest()[:10]}.wav"


def speaker_id(voice: str) -> str:
    """``en-gb+m3`` -> ``en-gb_m3`` ('+' sorts before '-', which would break Kaldi order)."""
    return voice.replace("+", "_")


@typechecked
def plan_utterance(seed: int, split: str, index: int, voices: Sequence[str],
                   vocab: Vocabulary) -> DemoUtt:
    """The ``index``-th utterance of ``split``; it depends on nothing else (voices take turns)."""
    rng = random.Random(f"{seed}/{split}/{index}")
    voice = voices[index % len(voices)]
    speed, pitch = rng.randint(*SPEED_RANGE), rng.randint(*PITCH_RANGE)
    text, prompt = make_sentence(vocab, rng)
    spk = speaker_id(voice)
    return DemoUtt(f"{spk}-{index:06d}", spk, voice, text, prompt, speed, pitch)


@typechecked
def split_voices(accents: Sequence[str], variants: Sequence[str], dev_voices: int,
                 test_voices: int, seed: int) -> Dict[str, List[str]]:
    """Disjoint voice lists per split, in the (seeded) order in which they take turns."""
    voices = [f"{a}+{v}" for a in accents for v in variants]
    if len(set(voices)) != len(voices):
        raise DataPrepError(f"accents/variants repeat a voice: {voices}")
    if dev_voices < 1 or test_voices < 1 or dev_voices + test_voices >= len(voices):
        raise DataPrepError(f"{len(voices)} voices cannot give {dev_voices} dev and "
                            f"{test_voices} test voices and at least one for train")
    random.Random(f"{seed}/voices").shuffle(voices)
    return {"test": voices[:test_voices], "dev": voices[test_voices:test_voices + dev_voices],
            "train": voices[test_voices + dev_voices:]}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DataPrepError(f"{name} not found on PATH: the demo corpus needs espeak-ng and "
                            "sox (apt-get install espeak-ng sox)")
    return path


def check_voices(accents: Sequence[str], variants: Sequence[str]) -> None:
    """Fail early on an accent or variant that this espeak-ng does not have (it would
    silently fall back to its default voice for an unknown variant)."""
    def listing(arg: str) -> List[List[str]]:
        out = subprocess.run([_tool("espeak-ng"), f"--voices={arg}"], capture_output=True,
                             text=True, check=True).stdout
        return [line.split() for line in out.splitlines()[1:] if line.strip()]

    languages = {row[1] for row in listing("en")}
    names = {tok[3:] for row in listing("variant") for tok in row if tok.startswith("!v/")}
    for kind, wanted, have in (("accent", accents, languages), ("variant", variants, names)):
        missing = [w for w in wanted if w not in have]
        if missing:
            raise DataPrepError(f"espeak-ng has no {kind} {missing}; it has {sorted(have)}")


STRESS_MARKS = "\u02c8\u02cc"  # IPA primary and secondary stress: not phones of their own


def phone_transcript(voice: str, prompt: str) -> str:
    """What espeak-ng says for ``prompt`` in ``voice``, as space-separated IPA phones.

    The synthesiser's own phonemisation (``-q --ipa``: no audio), so the phone targets of
    phoneme recognition are exactly what the audio holds, accent included; stress marks are
    dropped and word boundaries are not kept (SUPERB PR scores phones only). Speed and pitch
    do not change the phones.
    """
    cmd = [_tool("espeak-ng"), "-q", "--ipa", "--sep= ", "-v", voice, prompt]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return " ".join(out.translate({ord(c): None for c in STRESS_MARKS}).split())


def _synthesize(job: Tuple[DemoUtt, str]) -> Union[Tuple[int, str], BadUtterance]:
    """Write one 16 kHz wav unless it exists (complete: it was renamed into place); return its
    length in samples and its phone transcript."""
    utt, path = job
    if not os.path.exists(path):
        cmd = [_tool("espeak-ng"), "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch),
               "--stdout", utt.prompt]
        try:
            wav = subprocess.run(cmd, capture_output=True, check=True).stdout
            with atomic_output(path) as tmp:
                cmd = [_tool("sox"), *SOX_OPTIONS, str(tmp)]
                subprocess.run(cmd, input=wav, capture_output=True, check=True)
        except subprocess.CalledProcessError as e:
            err = e.stderr.decode(errors="replace").strip()
            return BadUtterance(utt.utt_id, path, SYNTH_FAILED,
                                f"{os.path.basename(cmd[0])} exited with {e.returncode}: {err}")
    try:
        num_samples = check_audio(path, SAMPLE_RATE)
    except AudioError as e:
        return BadUtterance.from_audio_error(utt.utt_id, e)
    try:
        phones = phone_transcript(utt.voice, utt.prompt)
    except subprocess.CalledProcessError as e:
        return BadUtterance(utt.utt_id, path, SYNTH_FAILED,
                            f"espeak-ng --ipa exited with {e.returncode}: {e.stderr.strip()}")
    if not phones:
        return BadUtterance(utt.utt_id, path, SYNTH_FAILED, "espeak-ng gave no phones")
    return num_samples, phones


def _synthesize_split(split: str, voices: List[str], seconds: float, num_utts: Optional[int],
                      seed: int, nj: int, vocab: Vocabulary, wav_dir: Path,
                      log: BadUttLog, cluster: Optional[dict] = None
                      ) -> Tuple[List[Utterance], Dict[str, str]]:
    """The split's utterances and their phone transcripts (utterance id -> phones)."""
    wav_dir.mkdir(parents=True, exist_ok=True)
    utts: List[Utterance] = []
    phones: Dict[str, str] = {}
    total, index = 0.0, 0
    while True:
        if num_utts is not None:
            count = num_utts
        elif not utts:  # calibrate the length of an utterance on a first small batch
            count = min(8 * nj, max(1, math.ceil(seconds / TYPICAL_SECONDS)))
        else:  # aim a little short, so that a last small batch ends it
            count = max(nj, math.ceil(0.97 * (seconds - total) / (total / len(utts))))
        plans = [plan_utterance(seed, split, index + i, voices, vocab) for i in range(count)]
        index += count
        jobs = [(p, str(wav_dir / p.file_name)) for p in plans]
        before, reached = len(utts), False
        with closing(parallel_imap(_synthesize, jobs, nj, f"synthesising {split}", cluster)) as results:
            for (plan, path), result in zip(jobs, results):
                if reached:
                    continue  # past the target: the file stays on disk for reruns, unused
                if isinstance(result, BadUtterance):
                    log.add(result)
                    continue
                num_samples, phones[plan.utt_id] = result
                utts.append(Utterance(plan.utt_id, path, num_samples, speaker=plan.speaker,
                                      text=plan.text))
                total += num_samples / SAMPLE_RATE
                reached = num_utts is None and total >= seconds
        if num_utts is not None or reached:
            return utts, phones
        if len(utts) == before:
            raise DataPrepError(f"{split}: none of {count} utterances could be synthesised "
                                f"({log.counts()})")


@typechecked
def prepare_demo_corpus(
    out_dir: Union[str, Path],
    audio_dir: Optional[Union[str, Path]] = None,
    train_hours: float = 1.0,
    dev_minutes: float = 5.0,
    test_minutes: float = 5.0,
    num_utts: Optional[int] = None,
    seed: int = 0,
    nj: int = 1,
    dev_voices: int = 8,
    test_voices: int = 8,
    accents: Sequence[str] = ACCENTS,
    variants: Sequence[str] = VARIANTS,
    on_bad_utt: str = "error",
    sid_held_out_every: int = 6,
    cluster: Optional[dict] = None,
) -> Dict[str, dict]:
    """Write ``<out_dir>/{train,dev,test}`` (each with summary.json and ``text_phn``, the phone
    transcripts) and ``<out_dir>/sid_{train,dev,test}``: the train voices' utterances split by
    speaker for speaker identification (:func:`~espnet2_stacking.data.speaker_split.split_by_speaker`;
    the ASR dev/test voices stay unseen); return the summaries.

    Audio goes to ``<audio_dir>/<split>/`` (default ``<out_dir>/wavs``). ``num_utts``, when
    given, replaces the durations: that many utterances per split. ``cluster``: a job class of
    the site's parallel config; a cluster class synthesises on its workers (``nj`` local
    processes otherwise).

    Example:
        >>> prepare_demo_corpus("data", "downloads/demo_wavs", train_hours=0.1, nj=2)
    """
    if num_utts is not None and num_utts < 1:
        raise DataPrepError(f"num_utts must be positive, got {num_utts}")
    targets = {"train": train_hours * 3600, "dev": dev_minutes * 60, "test": test_minutes * 60}
    if num_utts is None and min(targets.values()) <= 0:
        raise DataPrepError(f"durations must be positive: {targets} seconds")
    _tool("sox")
    check_voices(accents, variants)
    voices = split_voices(accents, variants, dev_voices, test_voices, seed)
    vocab = Vocabulary.from_file()
    out_dir = Path(out_dir)
    audio_dir = Path(audio_dir if audio_dir is not None else out_dir / "wavs").absolute()
    summaries = {}
    for split in SPLITS:
        log = BadUttLog(on_bad_utt)
        utts, phones = _synthesize_split(split, voices[split], targets[split], num_utts, seed, nj,
                                         vocab, audio_dir / split, log, cluster)
        # before write_kaldi_dir: its wav.scp, written last, marks the whole dir complete
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / split / PHONE_TEXT,
                          "".join(f"{u} {phones[u]}\n" for u in sorted(phones)))
        write_kaldi_dir(out_dir / split, utts)
        used = sorted({u.speaker for u in utts})
        summary = {**summarize(utts, log, SAMPLE_RATE),
                   "voices": [v for v in sorted(voices[split]) if speaker_id(v) in used]}
        write_summary(out_dir / split, summary)
        summaries[split] = summary
        if split == "train":
            train_utts = utts
    sid = split_by_speaker(train_utts, sid_held_out_every)
    missing = speakers_missing_from(sid)
    if missing:
        logger.warning("SID splits: %d speaker(s) lack utterances in some split (too few "
                       "utterances for held_out_every=%d): %s", len(missing), sid_held_out_every,
                       missing)
    empty = [name for name, utts in sid.items() if not utts]
    if empty:  # a toy corpus (e.g. --num_utts 3): too few utterances per voice for SID
        logger.warning("SID splits not written: sid_%s would have no utterance (%d train "
                       "utterances over %d voices, held_out_every=%d)", "/".join(empty),
                       len(train_utts), len({u.speaker for u in train_utts}), sid_held_out_every)
        for name in SID_SPLITS:  # a stale SID dir of another corpus must not be picked up
            shutil.rmtree(out_dir / f"sid_{name}", ignore_errors=True)
        return summaries
    for name, utts in sid.items():
        write_kaldi_dir(out_dir / f"sid_{name}", utts)
        summary = {**summarize(utts, BadUttLog(on_bad_utt), SAMPLE_RATE),
                   "speakers_missing": missing}
        write_summary(out_dir / f"sid_{name}", summary)
        summaries[f"sid_{name}"] = summary
    return summaries
