#!/usr/bin/env python3
"""Greedy CTC decoding, SUPERB's, of an ASR model trained with the plugin's components
(recipe stage 6, tasks asr and pr, at --decode_beam_size 1). Writes asr_inference's layout:
<output_dir>/1best_recog/{text,token,token_int,score}.

Example:
    python -m espnet2_stacking.bin.ctc_greedy_inference \\
        --asr_train_config exp/pr_student/config.yaml \\
        --asr_model_file exp/pr_student/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/upstream_states/student/test/feats.scp,speech,npy \\
        --output_dir exp/pr_student/decode_test

A prefix beam search (width > 1, language models) is ESPnet's: espnet2_stacking.bin.asr_inference.
"""

import argparse
import logging
from pathlib import Path

from espnet2.utils.types import str2triple_str

from espnet2_stacking.pipelines.ctc_greedy import decode_to_dir


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--data_path_and_name_and_type", type=str2triple_str, action="append",
                        required=True, help="path,speech,type (ESPnet's data types)")
    parser.add_argument("--key_file", default=None, help="decode only these utterances")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--ngpu", type=int, default=0, choices=[0, 1])
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.batch_size < 1:
        raise SystemExit(f"--batch_size must be 1 or more, got {args.batch_size}")
    decode_to_dir(args.data_path_and_name_and_type, args.asr_train_config, args.asr_model_file,
                  args.output_dir, key_file=args.key_file, batch_size=args.batch_size,
                  device="cuda" if args.ngpu else "cpu", dtype=args.dtype,
                  num_workers=args.num_workers)


if __name__ == "__main__":
    main()
