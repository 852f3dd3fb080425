#!/usr/bin/env python3
"""Synthesise the espeak-ng demo corpus into <out_dir>/{train,dev,test} (recipe stage 1), with
phone transcripts (text_phn) and speaker-ID splits of the train voices (<out_dir>/sid_*).

Example:
    python -m espnet2_stacking.bin.prepare_demo_corpus --out_dir data \\
        --audio_dir downloads/demo_wavs --train_hours 1.0 --dev_minutes 5 --test_minutes 5 \\
        --seed 0 --nj 2

Each split is a Kaldi-style dir (wav.scp, text, utt2spk, spk2utt, utt2num_samples) plus
summary.json; a voice (accent+variant) is a speaker, and dev/test voices are unseen in train.
The same seed and options give the same texts, voices, speeds, pitches and audio bytes; a
rerun reuses the wavs already written. wav.scp is written last: a dir without it is incomplete.
"""

import argparse
import logging
import sys
from typing import List, Optional

from espnet2_stacking.data.demo_corpus import ACCENTS, VARIANTS, prepare_demo_corpus
from espnet2_stacking.data.kaldi_dir import ON_BAD_UTT, DataPrepError, format_summaries
from espnet2_stacking.data.parallel_config import add_parallel_arguments, job_class_from_args


def comma_list(value: str) -> List[str]:
    return [v for v in value.split(",") if v]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--out_dir", required=True, help="Where train/, dev/, test/ go")
    parser.add_argument("--audio_dir", default=None,
                        help="Where the wavs go; None: <out_dir>/wavs")
    parser.add_argument("--train_hours", type=float, default=1.0, help="Training audio, hours")
    parser.add_argument("--dev_minutes", type=float, default=5.0, help="Dev audio, minutes")
    parser.add_argument("--test_minutes", type=float, default=5.0, help="Test audio, minutes")
    parser.add_argument("--num_utts", type=int, default=None,
                        help="Utterances per split, instead of the durations (tiny tests)")
    parser.add_argument("--dev_voices", type=int, default=8, help="Voices held out for dev")
    parser.add_argument("--test_voices", type=int, default=8, help="Voices held out for test")
    parser.add_argument("--accents", type=comma_list, default=",".join(ACCENTS),
                        help="espeak-ng English voices (espeak-ng --voices=en), comma separated")
    parser.add_argument("--variants", type=comma_list, default=",".join(VARIANTS),
                        help="espeak-ng variants (espeak-ng --voices=variant), comma separated")
    parser.add_argument("--seed", type=int, default=0,
                        help="Same seed, same corpus (texts, voices, speeds, pitches, bytes)")
    parser.add_argument("--nj", type=int, default=1, help="Parallel synthesis jobs")
    add_parallel_arguments(parser)
    parser.add_argument("--sid_held_out_every", type=int, default=6,
                        help="sid_{train,dev,test} (speaker ID, train voices): per voice, the "
                             "last of every N utterances to sid_test, the one before to sid_dev")
    parser.add_argument("--on_bad_utt", choices=ON_BAD_UTT, default="error",
                        help="error: stop at the first bad utterance; skip: log and count it")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    cluster = job_class_from_args(args, "prepare_demo_corpus")
    try:
        summaries = prepare_demo_corpus(
            args.out_dir, args.audio_dir, train_hours=args.train_hours,
            dev_minutes=args.dev_minutes, test_minutes=args.test_minutes,
            num_utts=args.num_utts, seed=args.seed, nj=args.nj, dev_voices=args.dev_voices,
            test_voices=args.test_voices, accents=args.accents, variants=args.variants,
            on_bad_utt=args.on_bad_utt, sid_held_out_every=args.sid_held_out_every,
            cluster=cluster,
        )
    except DataPrepError as e:
        sys.exit(f"prepare_demo_corpus: error: {e}")
    print(format_summaries({f"{args.out_dir}/{k}": v for k, v in summaries.items()}, "voices"))


if __name__ == "__main__":
    main()
