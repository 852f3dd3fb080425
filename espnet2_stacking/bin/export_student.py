#!/usr/bin/env python3
"""Export a distilled student for downstream use (recipe stage 4).

Example:
    python -m espnet2_stacking.bin.export_student --distill_dir exp/distill_interleaved \
        --out_dir exp/student_interleaved

writes the formats the student's architecture can carry (``--formats``, default all of them),
stacking.json (the growth log) and README.md (a model card):
- encoder stacking_transformer: ``espnet_ssl``, a stock ESPnet SSL-task model (config.yaml +
  model.pth) that ESPnet's ASR task loads through its ``espnet_ssl`` frontend, no plugin code;
- encoder hubert: ``torchaudio`` (model.pth + torchaudio_config.json, and
  espnet_asr_encoder.yaml to fine-tune it with ESPnet's torchaudiohubert encoder) and ``hf``
  (hf/: config.json + model.safetensors, a transformers HubertModel).
A format the architecture cannot carry is refused, naming those it can.
--random_out_dir DIR also writes the untrained student of the same shape there, the
downstream reference; --random_init writes only that one to --out_dir.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.pipelines.export import export_student


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
    parser.add_argument("--random_out_dir", type=Path, default=None,
                        help="Also export the random student here (one process for both)")
    parser.add_argument("--formats", type=str, default=None,
                        help="Comma-separated formats: espnet_ssl (encoder stacking_transformer); "
                             "torchaudio, hf (encoder hubert). Default: all the student's "
                             "architecture can carry")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    config_file = args.distill_dir / "config.yaml"
    if not config_file.exists():
        raise SystemExit(f"export_student: {config_file} not found (did stage 3 start?)")
    if args.random_init and args.random_out_dir is not None:
        raise SystemExit("export_student: --random_init exports only the random student to "
                         "--out_dir; --random_out_dir adds it beside the distilled one")
    exports = []  # (checkpoint or None for the random student, out dir)
    if args.random_init:
        exports.append((None, args.out_dir))
    else:
        model_file = args.model_file or args.distill_dir / "latest.pth"
        if not model_file.exists():
            raise SystemExit(f"export_student: {model_file} not found (did stage 3 finish?)")
        exports.append((model_file.resolve(), args.out_dir))
        if args.random_out_dir is not None:
            exports.append((None, args.random_out_dir))
    formats = [f for f in args.formats.split(",") if f] if args.formats else None
    for model_file, out_dir in exports:
        try:
            path = export_student(config_file, model_file, out_dir,
                                  stacking_log=args.distill_dir / "stacking.jsonl",
                                  formats=formats)
        except ValueError as e:
            raise SystemExit(f"export_student: {e}") from None
        print(f"export_student: {path}")

if __name__ == "__main__":
    main()
