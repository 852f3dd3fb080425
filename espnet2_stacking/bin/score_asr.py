#!/usr/bin/env python3
"""WER/CER of ASR decoding, PER of phoneme recognition, accuracy of speaker ID (recipe stage 7).

One decode dir (prints the counts, writes <decode_dir>/scores.json):
    python -m espnet2_stacking.bin.score_asr --ref_text data/test/text \
        --decode_dir exp/asr_student/decode_test

Every ASR run of a recipe -> RESULTS.md (also each decode dir's scores.json):
    python -m espnet2_stacking.bin.score_asr --datadir data --test_sets "test_clean test_other" \
        --asr_dirs exp/asr_student exp/asr_teacher exp/asr_student_random --results RESULTS.md

Every run of every task (one table per task, and a summary):
    python -m espnet2_stacking.bin.score_asr --datadir data --test_sets test \
        --asr_dirs exp/asr_student exp/asr_fbank --pr_dirs exp/pr_student exp/pr_fbank \
        --sid_dirs exp/sid_student exp/sid_fbank --sid_test_sets sid_test --results RESULTS.md

Decode dirs are <run_dir>/decode_<test set>, holding asr_inference's 1best_recog/text (asr:
against <set>/text; pr: against <set>/<phone_text>, the WER over phones being the PER) or
cls_inference's prediction/text (sid: against <set>/utt2spk). Training and decoding times
come from <run_dir>/train_seconds and decode_<set>/decode_seconds (the recipe writes them).
A reference utterance without a hypothesis is an error unless --missing deletion.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_stacking.asr.scoring import (
    MISSING_POLICIES,
    ErrorCounts,
    score_classification_dir,
    score_decode_dir,
)
from espnet2_stacking.data.atomic import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    one = parser.add_argument_group("one decode dir")
    one.add_argument("--decode_dir", type=Path, default=None,
                     help="A dir holding 1best_recog/text (asr_inference's --output_dir)")
    one.add_argument("--ref_text", type=Path, default=None, help="Kaldi text of the reference")
    runs = parser.add_argument_group("every run -> RESULTS.md")
    runs.add_argument("--asr_dirs", type=Path, nargs="+", default=None,
                      help="ASR training dirs (asr_<upstream name>), each with decode_<set>/")
    runs.add_argument("--pr_dirs", type=Path, nargs="+", default=None,
                      help="Phoneme recognition dirs (pr_<upstream name>), each with decode_<set>/")
    runs.add_argument("--sid_dirs", type=Path, nargs="+", default=None,
                      help="Speaker ID dirs (sid_<upstream name>), each with decode_<sid set>/")
    runs.add_argument("--datadir", type=Path, default=Path("data"),
                      help="Holds <test set>/text (and <phone_text>), <sid test set>/utt2spk")
    runs.add_argument("--test_sets", type=str, default=None,
                      help="Test sets of asr and pr, space separated")
    runs.add_argument("--sid_test_sets", type=str, default="sid_test",
                      help="Test sets of sid, space separated")
    runs.add_argument("--phone_text", type=str, default="text_phn",
                      help="The phone transcripts' file name in each test set's dir")
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


def score_task(task: str, data_dir: Path, decode_dir: Path,
               args: argparse.Namespace) -> Dict[str, ErrorCounts]:
    """One run's counts on one test set (and its decode dir's scores.json)."""
    if task == "asr":
        return score_one(data_dir / "text", decode_dir, args.missing)
    if task == "pr":
        ref = data_dir / args.phone_text
        per = score_decode_dir(ref, decode_dir, missing=args.missing)["wer"]  # words = phones
        scores = {"per": per}
        logging.info(f"{decode_dir}: PER {100 * per.error_rate:.2f}% ({per.snt} utterances)")
    else:
        ref = data_dir / "utt2spk"
        acc = score_classification_dir(ref, decode_dir, missing=args.missing)
        scores = {"acc": acc}
        logging.info(f"{decode_dir}: accuracy {100 * acc.corr / max(acc.snt, 1):.2f}% "
                     f"({acc.snt} utterances)")
    atomic_write_text(decode_dir / "scores.json", json.dumps(
        {"ref_text": str(ref), **{k: v.as_dict() for k, v in scores.items()}}, indent=1) + "\n")
    return scores


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    parser = get_parser()
    args = parser.parse_args(cmd)
    task_dirs = {"asr": args.asr_dirs, "pr": args.pr_dirs, "sid": args.sid_dirs}
    any_runs = any(d is not None for d in task_dirs.values())
    if (args.decode_dir is None) == (not any_runs):
        parser.error("give either --decode_dir with --ref_text, or --asr_dirs/--pr_dirs/--sid_dirs")
    if args.decode_dir is not None:
        if args.ref_text is None:
            parser.error("--decode_dir needs --ref_text")
        scores = score_one(args.ref_text, args.decode_dir, args.missing)
        print(json.dumps({k: v.as_dict() for k, v in scores.items()}, indent=1))
        return
    test_sets = (args.test_sets or "").split()
    sid_sets = args.sid_test_sets.split()
    if (args.asr_dirs or args.pr_dirs) and not test_sets:
        parser.error("--asr_dirs and --pr_dirs need --test_sets")
    if args.sid_dirs and not sid_sets:
        parser.error("--sid_dirs needs --sid_test_sets")

    from espnet2_stacking.asr.results import DownstreamRun, read_seconds, upstream_info, write_results

    runs, counted = [], {}
    for task, dirs in task_dirs.items():
        seen = set()
        for run_dir in dirs or []:
            info = upstream_info(run_dir, counted)
            if info.name in seen:
                parser.error(f"two {task} dirs are named {task}_{info.name}")
            seen.add(info.name)
            sets = sid_sets if task == "sid" else test_sets
            runs.append(DownstreamRun(
                task=task, upstream=info,
                scores={s: score_task(task, args.datadir / s, run_dir / f"decode_{s}", args)
                        for s in sets},
                train_seconds=read_seconds(run_dir / "train_seconds"),
                decode_seconds={s: read_seconds(run_dir / f"decode_{s}" / "decode_seconds")
                                for s in sets}))
    stage_times = None
    if args.stage_times is not None and args.stage_times.exists():
        stage_times = [line.split("\t") for line in args.stage_times.read_text().splitlines()
                       if line.count("\t") == 2]
    write_results(args.results, runs, stage_times)
    print(f"score_asr: wrote {args.results}")

if __name__ == "__main__":
    main()
