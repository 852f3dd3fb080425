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

--codec chooses how the states are stored (fp16, int8, or pq codes that the model decodes on
its device; README "Target codecs"). The int8 / pq parameters are trained on the first
--data_dir (the training set) and used for the others as well.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import humanfriendly
from espnet2.utils.types import str2bool

from espnet2_stacking.core.text import int_list
from espnet2_stacking.data.target_codecs import CODECS
from espnet2_stacking.pipelines.teacher_dump import (
    DEFAULT_CODEBOOK_FRAMES,
    DEFAULT_SHARD_SIZE,
    dump_teacher_states,
)


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
                        help="dtype the teacher runs in (files hold the --codec's form)")
    parser.add_argument("--codec", default="fp16", choices=CODECS,
                        help="How states are stored: fp16 (2 bytes a value), int8 (1 byte a "
                             "value plus a scale a frame), pq (--num_codebooks bytes a frame: "
                             "product-quantisation codes, decoded by the model on its device)")
    parser.add_argument("--num_codebooks", type=int, default=8,
                        help="pq: sub-vectors (bytes) per frame; must divide every width")
    parser.add_argument("--shard_size", type=humanfriendly.parse_size,
                        default=DEFAULT_SHARD_SIZE,
                        help="Stored bytes per shard file, e.g. 1GB (a job holds one in "
                             "memory); 0: one file per utterance")
    parser.add_argument("--codebook_frames", type=int, default=DEFAULT_CODEBOOK_FRAMES,
                        help="int8 / pq: frames of the first data dir the codec is trained on")
    parser.add_argument("--codecs_from", type=Path, default=None,
                        help="int8 / pq: use this dump dir's codec files (codecs/) instead of "
                             "training them (default: the first --out_dir's for the others)")
    parser.add_argument("--codecs_only", type=str2bool, default=False,
                        help="int8 / pq: only make the codec files (and meta.json), which "
                             "--job runs need before they start (stage 2 runs this first)")
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
    parser.add_argument("--job", type=job_of, default=None, metavar="J/N",
                        help="Job J of N (1-based) of a dump a recipe dispatches: only its share "
                             "of the batches, no lists; rerun without --job once all N ended to "
                             "verify and write the lists")
    return parser


def job_of(value: str) -> tuple:
    """'J/N' (1-based) -> (J - 1, N)."""
    try:
        j, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--job takes J/N, e.g. 2/4, got '{value}'") from None
    if not 1 <= j <= n:
        raise argparse.ArgumentTypeError(f"--job {value}: J must be within 1..N")
    return j - 1, n


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
    codecs_from = args.codecs_from
    for data_dir, out_dir in zip(args.data_dir, args.out_dir):
        summary = dump_teacher_states(
            data_dir, out_dir, args.teacher, chosen["layers"], dtype=args.dtype,
            normalize=args.normalize,
            nj=args.nj, ngpu=args.ngpu, max_batch_seconds=args.max_batch_seconds,
            hidden_size=chosen["hidden_size"], num_teacher_layers=chosen["num_teacher_layers"],
            cnn_features=chosen["cnn_features"], job=args.job, codec=args.codec,
            num_codebooks=args.num_codebooks, shard_size=args.shard_size,
            codebook_frames=args.codebook_frames, codecs_from=codecs_from,
            codecs_only=args.codecs_only,
        )
        if args.codec != "fp16" and codecs_from is None:
            codecs_from = out_dir  # one set of codecs for every dir (one model decodes all)
        if args.codecs_only:
            print(f"dump_teacher_feats: {args.codec} codecs ready in {out_dir}")
            continue
        if args.job is not None:
            print(f"dump_teacher_feats: job {summary['job']}: {summary['dumped_now']} "
                  f"utterances dumped -> {out_dir}")
            continue
        print(
            f"dump_teacher_feats: {summary['utterances']} utterances, {summary['hours']:.3f} h "
            f"of audio, {summary['codec']}, {summary['gb_written']:.3f} GB written ({summary['gb_total']:.3f} GB in "
            f"all), {summary['seconds']:.1f} s -> {out_dir}"
        )

if __name__ == "__main__":
    main()
