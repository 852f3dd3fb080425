#!/usr/bin/env python3
"""Probe a pretrained teacher against a random init of its config (layer CKA, linear probes).

Example:
    python -m espnet2_stacking.bin.probe_teacher --teacher exp/teacher/model.pth \
        --data_dir data/test --labels exp/teacher/labels/test/text --out_dir exp/teacher/probe

Prints ``layer | trained acc | random acc`` and writes <out_dir>/probe.json (with
``trained_beats_random``) and <out_dir>/probe.png. The exit status does not depend on the
verdict. See espnet2_stacking.pipelines.teacher_probe.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import torch

from espnet2_stacking.pipelines.teacher_probe import format_table, probe_teacher


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True,
                        help="An ESPnet SSL .pth with config.yaml beside it")
    parser.add_argument("--data_dir", type=Path, required=True,
                        help="Kaldi-style dir (wav.scp, utt2num_samples) to probe on")
    parser.add_argument("--labels", type=Path, required=True,
                        help="Kaldi text of per-frame labels of that set (pretrain_teacher's "
                             "labels/<set>/text)")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the random init and the utterance split")
    parser.add_argument("--max_utts", type=int, default=None, help="Use only the first N")
    parser.add_argument("--num_threads", type=int, default=1,
                        help="torch threads (more than the free cores slows it down many times)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.num_threads)
    result = probe_teacher(args.teacher, args.data_dir, args.labels, args.out_dir,
                           seed=args.seed, max_utts=args.max_utts)
    print(format_table(result))
    print(f"probe_teacher: {args.out_dir / 'probe.json'}, {args.out_dir / 'probe.png'}")


if __name__ == "__main__":
    main()
