#!/usr/bin/env python3
"""Read LibriSpeech sets from their own layout into one Kaldi-style data dir (stage 1).

Example:
    python -m espnet2_stacking.bin.prepare_librispeech --librispeech_dir /data/LibriSpeech \\
        --sets train-clean-100,train-clean-360,train-other-500 --out_dir data/train_960 --nj 4

Reads <librispeech_dir>/<set>/<speaker>/<chapter>/*.flac and *.trans.txt; wav.scp points at
the .flac files, utt2num_samples comes from their headers. Every file is checked (16 kHz,
mono, not empty, readable to the end); --on_bad_utt skip logs and counts bad utterances in
<out_dir>/summary.json instead of stopping. wav.scp is written last: a dir without it is
incomplete.
"""

import argparse
import logging
import sys
from typing import List, Optional

from espnet2_stacking.data.kaldi_dir import ON_BAD_UTT, DataPrepError, format_summaries
from espnet2_stacking.data.librispeech import prepare_librispeech
from espnet2_stacking.data.parallel_config import add_parallel_arguments, job_class_from_args


def comma_list(value: str) -> List[str]:
    return [v for v in value.split(",") if v]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--librispeech_dir", required=True,
                        help="The extracted tree holding train-clean-100/, dev-clean/, ...")
    parser.add_argument("--sets", type=comma_list, required=True,
                        help="Comma-separated sets, merged into one data dir")
    parser.add_argument("--out_dir", required=True, help="The data dir to write")
    parser.add_argument("--nj", type=int, default=1, help="Parallel audio-check jobs")
    add_parallel_arguments(parser)
    parser.add_argument("--on_bad_utt", choices=ON_BAD_UTT, default="error",
                        help="error: stop at the first bad utterance; skip: log and count it")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    cluster = job_class_from_args(args, "prepare_librispeech")
    try:
        summary = prepare_librispeech(args.librispeech_dir, args.sets, args.out_dir,
                                      nj=args.nj, on_bad_utt=args.on_bad_utt, cluster=cluster)
    except DataPrepError as e:
        sys.exit(f"prepare_librispeech: error: {e}")
    print(format_summaries({args.out_dir: summary}))


if __name__ == "__main__":
    main()
