#!/usr/bin/env python3
"""Dump every hidden state of a frozen upstream for data dirs, once, for downstream heads.

Example (recipe stage 5 with --downstream_feats dump; each --data_dir goes to the --out_dir at
its position):
    python -m espnet2_stacking.bin.dump_upstream_states \
        --upstream exp/student_interleaved_eql/model.pth \
        --data_dir data/train data/dev --out_dir dump/states/student/train dump/states/student/dev

A head then reads ``<out_dir>/feats.scp`` as its ``speech`` (type npy) with
``--frontend_conf upstream=<the same spec> --frontend_conf input=states``. A rerun keeps a
finished dir made from the same upstream file and settings, and an utterance found in an
earlier --data_dir (same id, audio and length) is linked from there, not computed again; see
espnet2_stacking.pipelines.upstream_states for the layout.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.pipelines.upstream_states import UpstreamStatesDumper
from espnet2_stacking.upstreams.abs_upstream import DTYPES, NORMALIZATIONS


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", required=True, help="Upstream spec (an export, a teacher, random:...)")
    parser.add_argument("--data_dir", type=Path, nargs="+", required=True,
                        help="Kaldi-style dirs (wav.scp, utt2num_samples)")
    parser.add_argument("--out_dir", type=Path, nargs="+", required=True,
                        help="One output dir per --data_dir")
    parser.add_argument("--upstream_dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--upstream_normalize", default="none", choices=NORMALIZATIONS)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU; 1: the first GPU")
    parser.add_argument("--max_batch_seconds", type=float, default=60.0,
                        help="Audio per forward pass (batch size x longest utterance)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    if len(args.data_dir) != len(args.out_dir):
        sys.exit(f"--data_dir gives {len(args.data_dir)} dirs but --out_dir {len(args.out_dir)}")
    # one dumper: the upstream is loaded once, and an utterance in several dirs runs once
    dumper = UpstreamStatesDumper(args.upstream, upstream_dtype=args.upstream_dtype,
                                  upstream_normalize=args.upstream_normalize,
                                  device="cuda" if args.ngpu > 0 else "cpu",
                                  max_batch_seconds=args.max_batch_seconds)
    for data_dir, out_dir in zip(args.data_dir, args.out_dir):
        dumper.dump(data_dir, out_dir)


if __name__ == "__main__":
    main()
