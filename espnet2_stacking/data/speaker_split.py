"""Train/dev/test splits of the same speakers, for speaker identification (SUPERB SID).

ASR splits keep test speakers unseen; SID needs the opposite: every test speaker is one of the
classes the model was trained on. :func:`split_by_speaker` partitions one set of utterances per
speaker, deterministically (by utterance id, no random state), and names the speakers that end
up in fewer than all three splits instead of dropping them.
"""

from typing import Dict, List, Sequence, Set

from typeguard import typechecked

from espnet2_stacking.data.kaldi_dir import DataPrepError
from espnet2_stacking.data.utterances import Utterance

SID_SPLITS = ("train", "dev", "test")


@typechecked
def split_by_speaker(utts: Sequence[Utterance], held_out_every: int = 6) -> Dict[str, List[Utterance]]:
    """Per speaker, in utterance-id order: the last of every ``held_out_every`` utterances goes
    to test, the one before it to dev, the rest to train.

    A speaker with fewer than ``held_out_every`` utterances has some in train only (or
    train and dev): :func:`speakers_missing_from` lists them for the summary.

    Raises DataPrepError when an utterance has no speaker or ``held_out_every`` < 3 (a period
    must leave at least one utterance in each split).
    """
    if held_out_every < 3:
        raise DataPrepError(f"held_out_every must be at least 3, got {held_out_every}")
    by_speaker: Dict[str, List[Utterance]] = {}
    for u in utts:
        if u.speaker is None:
            raise DataPrepError(f"utterance {u.utt_id} ({u.path}): no speaker, cannot split by speaker")
        by_speaker.setdefault(u.speaker, []).append(u)
    out: Dict[str, List[Utterance]] = {s: [] for s in SID_SPLITS}
    for speaker in sorted(by_speaker):
        for i, u in enumerate(sorted(by_speaker[speaker], key=lambda u: u.utt_id)):
            place = i % held_out_every
            split = "test" if place == held_out_every - 1 else "dev" if place == held_out_every - 2 else "train"
            out[split].append(u)
    return out


def speakers_missing_from(splits: Dict[str, List[Utterance]]) -> Dict[str, List[str]]:
    """speaker -> the SID splits it has no utterance in (only speakers missing somewhere)."""
    return missing_speakers({name: {u.speaker for u in splits[name]} for name in SID_SPLITS})


@typechecked
def missing_speakers(present: Dict[str, Set[str]]) -> Dict[str, List[str]]:
    """``present``: split name -> its speakers (in split order). Returns speaker -> the splits
    it is absent from, for the speakers absent from at least one."""
    everyone = set().union(*present.values())
    return {s: [n for n in present if s not in present[n]] for s in sorted(everyone)
            if any(s not in speakers for speakers in present.values())}
