#!/usr/bin/env python3
"""Export a distilled student for downstream use (recipe stage 4).

Example:
    python -m espnet2_stacking.bin.export_student --distill_dir exp/distill_interleaved \
        --out_dir exp/student_interleaved

(add --random_init for the untrained student of the same shape, the downstream reference)
writes a stock ESPnet SSL-task model (config.yaml + model.pth) that ESPnet's ASR task loads
through its ``espnet_ssl`` frontend with no plugin code, plus stacking.json (the growth log).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.distill.export import export_student


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--distill_dir", type=Path, required=True,
                        help="Output dir of distill_train (config.yaml, *.pth, stacking.jsonl)")
    parser.add_argument("--model_file", type=Path, default=None,
                        help="Which checkpoint (default: <distill_dir>/latest.pth, the final "
                             "epoch: earlier ones may be shallower)")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--random_init", action="store_true",
                        help="Export the untrained student of the same shape instead (every "
                             "layer freshly initialised): the downstream reference a "
                             "distilled student must beat")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    config_file = args.distill_dir / "config.yaml"
    if not config_file.exists():
        raise SystemExit(f"export_student: {config_file} not found (did stage 3 start?)")
    if args.random_init:
        model_file = None
    else:
        model_file = args.model_file or args.distill_dir / "latest.pth"
        if not model_file.exists():
            raise SystemExit(f"export_student: {model_file} not found (did stage 3 finish?)")
        model_file = model_file.resolve()
    path = export_student(config_file, model_file, args.out_dir,
                          stacking_log=args.distill_dir / "stacking.jsonl")
    print(f"export_student: {path}")


if __name__ == "__main__":
    main()
