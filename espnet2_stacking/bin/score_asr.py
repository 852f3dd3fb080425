#!/usr/bin/env python3
"""WER/CER of ASR decoding (recipe stage 7).

One decode dir (prints the counts, writes <decode_dir>/scores.json):
    python -m espnet2_stacking.bin.score_asr --ref_text data/test/text \
        --decode_dir exp/asr_student/decode_test

Every ASR run of a recipe -> RESULTS.md (also each decode dir's scores.json):
    python -m espnet2_stacking.bin.score_asr --datadir data --test_sets "test_clean test_other" \
        --asr_dirs exp/asr_student exp/asr_teacher exp/asr_student_random --results RESULTS.md

Decode dirs are <asr_dir>/decode_<test set>, holding asr_inference's 1best_recog/text.
A reference utterance without a hypothesis is an error unless --missing deletion.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_stacking.asr.scoring import MISSING_POLICIES, ErrorCounts, score_decode_dir
from espnet2_stacking.data.atomic import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    one = parser.add_argument_group("one decode dir")
    one.add_argument("--decode_dir", type=Path, default=None,
                     help="A dir holding 1best_recog/text (asr_inference's --output_dir)")
    one.add_argument("--ref_text", type=Path, default=None, help="Kaldi text of the reference")
    runs = parser.add_argument_group("every ASR run -> RESULTS.md")
    runs.add_argument("--asr_dirs", type=Path, nargs="+", default=None,
                      help="ASR training dirs (asr_<upstream name>), each with decode_<set>/")
    runs.add_argument("--datadir", type=Path, default=Path("data"),
                      help="Holds <test set>/text")
    runs.add_argument("--test_sets", type=str, default=None, help="Space separated")
    runs.add_argument("--results", type=Path, default=Path("RESULTS.md"))
    runs.add_argument("--stage_times", type=Path, default=None,
                      help="The recipe's exp/stage_times.tsv, tabled in RESULTS.md")
    parser.add_argument("--missing", choices=MISSING_POLICIES, default="error",
                        help="A reference utterance without a hypothesis: error, or score it "
                             "as all deletions (logged and counted in RESULTS.md)")
    return parser


def score_one(ref_text: Path, decode_dir: Path, missing: str) -> Dict[str, ErrorCounts]:
    scores = score_decode_dir(ref_text, decode_dir, missing=missing)
    atomic_write_text(decode_dir / "scores.json", json.dumps(
        {"ref_text": str(ref_text), **{k: v.as_dict() for k, v in scores.items()}}, indent=1) + "\n")
    logging.info(f"{decode_dir}: WER {100 * scores['wer'].error_rate:.2f}% "
                 f"CER {100 * scores['cer'].error_rate:.2f}% ({scores['wer'].snt} utterances)")
    return scores


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    parser = get_parser()
    args = parser.parse_args(cmd)
    if (args.decode_dir is None) == (args.asr_dirs is None):
        parser.error("give either --decode_dir with --ref_text, or --asr_dirs with --test_sets")
    if args.decode_dir is not None:
        if args.ref_text is None:
            parser.error("--decode_dir needs --ref_text")
        scores = score_one(args.ref_text, args.decode_dir, args.missing)
        print(json.dumps({k: v.as_dict() for k, v in scores.items()}, indent=1))
        return
    if not args.test_sets or not args.test_sets.split():
        parser.error("--asr_dirs needs --test_sets")

    from espnet2_stacking.asr.results import upstream_info, write_results

    runs, scores = [], {}
    for asr_dir in args.asr_dirs:
        info = upstream_info(asr_dir)
        if info.name in scores:
            parser.error(f"two ASR dirs are named asr_{info.name}")
        runs.append(info)
        scores[info.name] = {
            s: score_one(args.datadir / s / "text", asr_dir / f"decode_{s}", args.missing)
            for s in args.test_sets.split()
        }
    stage_times = None
    if args.stage_times is not None and args.stage_times.exists():
        stage_times = [line.split("\t") for line in args.stage_times.read_text().splitlines()
                       if line.count("\t") == 2]
    write_results(args.results, runs, scores, stage_times)
    print(f"score_asr: wrote {args.results}")


if __name__ == "__main__":
    main()
