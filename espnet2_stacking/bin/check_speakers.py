#!/usr/bin/env python3
"""Check the speaker-ID splits before training (recipe stage 5, task ``sid``).

Speaker ID classifies an utterance among the speakers of the training split, so every speaker
of the other splits must be one of them: a dev or test speaker that train lacks can never be
recognised (ESPnet would read its label as <unk>), and one that has no dev or test utterance
is not measured. Each is reported by name, with its split and utterances, nothing dropped.

Example:
    python -m espnet2_stacking.bin.check_speakers data/sid_train data/sid_dev data/sid_test

The first dir is the training split. Each dir needs ``wav.scp`` and ``utt2spk``. Exits 1, after
reporting everything, when an utterance has no speaker, or a speaker of a later split is
missing from the training split; a training speaker missing from a later split is a warning.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_stacking.core.text import short_list
from espnet2_stacking.data.kaldi_dir import read_scp
from espnet2_stacking.data.speaker_split import missing_speakers


def check_speaker_splits(dirs: List[Path]) -> List[str]:
    """Problems of the splits, one line each; lines starting "error:" stop the recipe."""
    lines: List[str] = []
    utt2spk: Dict[Path, Dict[str, str]] = {}
    for d in dirs:
        try:
            wavs = read_scp(d / "wav.scp")
            labels = read_scp(d / "utt2spk", allow_empty=True)
        except (OSError, ValueError) as e:  # missing or malformed: named in e
            lines.append(f"error: {e}")
            continue
        unlabelled = sorted((set(wavs) - set(labels)) | {u for u, s in labels.items() if not s})
        if unlabelled:
            lines.append(f"error: {d / 'utt2spk'}: no speaker for {len(unlabelled)} of the "
                         f"{len(wavs)} utterances of {d / 'wav.scp'}: {short_list(unlabelled)}")
        extra = sorted(set(labels) - set(wavs))
        if extra:
            lines.append(f"error: {d / 'utt2spk'}: {len(extra)} utterance(s) not in "
                         f"{d / 'wav.scp'}: {short_list(extra)}")
        utt2spk[d] = {u: s for u, s in labels.items() if s}
    if len(utt2spk) != len(dirs):
        return lines
    train = dirs[0]
    missing = missing_speakers({str(d): set(utt2spk[d].values()) for d in dirs})
    for speaker, absent in missing.items():
        if str(train) in absent:
            for d in dirs[1:]:
                utts = sorted(u for u, s in utt2spk[d].items() if s == speaker)
                if utts:
                    lines.append(f"error: {d / 'utt2spk'}: speaker {speaker} is not in {train} "
                                 f"(not a class the model learns): {len(utts)} utterance(s), "
                                 f"{short_list(utts, 3)}")
        else:
            utts = sorted(u for u, s in utt2spk[train].items() if s == speaker)
            lines.append(f"warning: speaker {speaker} ({len(utts)} utterance(s) in {train}) has "
                         f"none in {', '.join(absent)}: it is trained on, not measured")
    return lines


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+",
                        help="Kaldi-style data dirs, the training split first")
    args = parser.parse_args(cmd)
    if len(args.dirs) < 2:
        parser.error("give the training split and at least one other split")
    lines = check_speaker_splits(args.dirs)
    for line in lines:
        print(f"check_speakers: {line}", file=sys.stderr)
    speakers = len(set(read_scp(args.dirs[0] / "utt2spk", allow_empty=True).values())) \
        if not any(x.startswith("error:") for x in lines) else None
    if speakers is not None:
        print(f"check_speakers: {len(args.dirs)} splits, {speakers} speakers in {args.dirs[0]}; "
              f"{sum(x.startswith('warning:') for x in lines)} speaker(s) missing from a later split",
              file=sys.stderr)
    if any(x.startswith("error:") for x in lines):
        sys.exit(1)


if __name__ == "__main__":
    main()
