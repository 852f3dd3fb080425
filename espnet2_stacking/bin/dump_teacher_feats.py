#!/usr/bin/env python3
"""Dump a teacher's hidden states for a data dir (recipe stage 2).

Example (several data dirs in one run: each --data_dir goes to the --out_dir at its position):
    python -m espnet2_stacking.bin.dump_teacher_feats --data_dir data/train data/dev \
        --teacher /models/hubert_base_ls960.pt --distill_config conf/distill.yaml \
        --out_dir dump/train dump/dev --nj 4 --ngpu 1

The layers come from --layers, or from ``stacking_conf.targets`` of the distillation config
(which also fixes the expected teacher width and depth, and with ``student_cnn: teacher_frozen``
asks for the teacher's CNN output too). Rerunning after a kill continues where it
stopped; see espnet2_stacking.pipelines.teacher_dump for the output layout.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool

from espnet2_stacking.core.text import int_list
from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", type=Path, nargs="+", required=True,
                        help="Kaldi-style dir(s) with wav.scp and utt2num_samples")
    parser.add_argument("--out_dir", type=Path, nargs="+", required=True,
                        help="One output dir per --data_dir")
    parser.add_argument("--teacher", type=str, required=True,
                        help="Teacher spec: fairseq .pt, HF dir, ESPnet SSL .pth, random:...")
    parser.add_argument("--layers", type=int_list, default=None,
                        help="Teacher hidden states to store, e.g. 4,8,12")
    parser.add_argument("--distill_config", type=Path, default=None,
                        help="Read stacking_conf.targets (and the expected teacher shape) from this "
                             "distillation YAML instead of --layers")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype the teacher runs in (files are always float16)")
    parser.add_argument("--normalize", default="none", choices=["none", "layer_norm"],
                        help="layer_norm: per-frame LayerNorm of every stored state (high-norm "
                             "or pre-LN teachers; keeps float16 files finite)")
    parser.add_argument("--nj", type=int, default=1,
                        help="Parallel jobs (at most one per batch; one job runs in this process)")
    parser.add_argument("--ngpu", type=int, default=0, help="GPUs (jobs are spread over them)")
    parser.add_argument("--cnn_features", type=str2bool, default=None,
                        help="Also store the teacher's CNN output (cnn.scp), which a student "
                             "with the teacher's CNN frozen reads instead of recomputing it "
                             "(student_cnn teacher_frozen). Default: true when the distillation "
                             "config says student_cnn: teacher_frozen, else false")
    parser.add_argument("--max_batch_seconds", type=float, default=100.0,
                        help="Audio per batch, padding included")
    return parser


def layers_from_config(path: Path) -> dict:
    from espnet2_stacking.tasks.distill_config import read_distill_config

    conf = read_distill_config(path)
    return {
        "layers": sorted(conf["stacking_conf"]["targets"]),
        "hidden_size": conf.get("teacher_hidden_size"),
        "num_teacher_layers": conf.get("teacher_num_layers"),
        "cnn_features": conf.get("student_cnn") == "teacher_frozen",
    }


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    parser = get_parser()
    args = parser.parse_args(cmd)
    if len(args.data_dir) != len(args.out_dir):
        parser.error(f"{len(args.data_dir)} --data_dir but {len(args.out_dir)} --out_dir: give "
                     "one output dir per data dir")
    if (args.layers is None) == (args.distill_config is None):
        sys.exit("dump_teacher_feats: give exactly one of --layers and --distill_config")
    if args.layers is not None:
        chosen = {"layers": args.layers, "hidden_size": None, "num_teacher_layers": None,
                  "cnn_features": False}
    else:
        chosen = layers_from_config(args.distill_config)
    if args.cnn_features is not None:
        chosen["cnn_features"] = args.cnn_features
    for data_dir, out_dir in zip(args.data_dir, args.out_dir):
        summary = dump_teacher_states(
            data_dir, out_dir, args.teacher, chosen["layers"], dtype=args.dtype,
            normalize=args.normalize,
            nj=args.nj, ngpu=args.ngpu, max_batch_seconds=args.max_batch_seconds,
            hidden_size=chosen["hidden_size"], num_teacher_layers=chosen["num_teacher_layers"],
            cnn_features=chosen["cnn_features"],
        )
        print(
            f"dump_teacher_feats: {summary['utterances']} utterances, {summary['hours']:.3f} h "
            f"of audio, {summary['gb_written']:.3f} GB written ({summary['gb_total']:.3f} GB in "
            f"all), {summary['seconds']:.1f} s -> {out_dir}"
        )

if __name__ == "__main__":
    main()
