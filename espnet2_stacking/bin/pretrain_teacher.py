#!/usr/bin/env python3
"""Pretrain a small HuBERT-style teacher with ESPnet's SSL task (recipe stage 0).

Example:
    python -m espnet2_stacking.bin.pretrain_teacher --data_dir data/train --valid_dir data/dev \
        --config conf/teacher_hubert_demo.yaml --out_dir exp/teacher --nj 2

    # HuBERT's second iteration: labels from the first teacher's middle state
    python -m espnet2_stacking.bin.pretrain_teacher --data_dir data/train --valid_dir data/dev \
        --config conf/teacher_hubert_demo.yaml --out_dir exp/teacher_iter2 \
        --label_upstream exp/teacher/model.pth

MFCC k-means labels, ESPnet collect stats, ESPnet training, then <out_dir>/model.pth with
config.yaml beside it (a --teacher for every later stage); the path is printed last. --resume
continues a killed run (finished sub-steps are skipped, training resumes from its checkpoint).
See espnet2_stacking.pipelines.teacher_pretrain for the layout of <out_dir>.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.data.parallel_config import add_parallel_arguments, job_class_from_args
from espnet2_stacking.pipelines.teacher_pretrain import pretrain_teacher


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", type=Path, required=True, help="Training Kaldi-style dir")
    parser.add_argument("--valid_dir", type=Path, required=True, help="Validation Kaldi-style dir")
    parser.add_argument("--config", type=Path, required=True, help="espnet2.bin.ssl_train YAML")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--num_clusters", type=int, default=None,
                        help="k-means clusters (default: the hubert loss's num_classes, which "
                             "it must equal)")
    parser.add_argument("--nj", type=int, default=1, help="Processes for the MFCC features")
    add_parallel_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="Continue the run in --out_dir instead of refusing a used dir")
    parser.add_argument("--seed", type=int, default=0, help="k-means and training seed")
    parser.add_argument("--extra_dirs", type=Path, nargs="*", default=[],
                        help="More data dirs to label, e.g. data/test (for probe_teacher)")
    parser.add_argument("--max_epoch", type=int, default=None, help="Override the config's")
    parser.add_argument("--num_iters_per_epoch", type=int, default=None,
                        help="Override the config's")
    parser.add_argument("--label_upstream", default=None,
                        help="HuBERT's next iteration: cluster this upstream's hidden states "
                             "(e.g. the teacher this script made before) instead of MFCCs")
    parser.add_argument("--label_layer", type=int, default=None,
                        help="The state --label_upstream's labels cluster (0 = transformer "
                             "input; default: the middle one, L // 2)")
    parser.add_argument("--max_kmeans_frames", type=int, default=200000,
                        help="Frames sampled for k-means")
    parser.add_argument("--num_threads", type=int, default=1,
                        help="torch threads of the ESPnet training (and the probe); more "
                             "than the free cores slows it down many times")
    parser.add_argument("--probe_dir", type=Path, default=None,
                        help="One of --extra_dirs: probe the teacher on it afterwards against a "
                             "random init (bin/probe_teacher's table, <out_dir>/probe/), in this "
                             "process")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.label_layer is not None and args.label_upstream is None:
        parser.error("--label_layer needs --label_upstream (MFCC labels have no layers)")
    if args.probe_dir is not None and args.probe_dir not in (args.extra_dirs or []):
        parser.error(f"--probe_dir {args.probe_dir} must be one of --extra_dirs (its labels are "
                     "made there)")
    model = pretrain_teacher(
        args.data_dir, args.valid_dir, args.config, args.out_dir,
        num_clusters=args.num_clusters, nj=args.nj, resume=args.resume, seed=args.seed,
        extra_dirs=args.extra_dirs, max_epoch=args.max_epoch,
        num_iters_per_epoch=args.num_iters_per_epoch, max_kmeans_frames=args.max_kmeans_frames,
        num_threads=args.num_threads, cluster=job_class_from_args(args, "pretrain_teacher"),
        label_upstream=args.label_upstream, label_layer=args.label_layer,
    )
    print(f"pretrain_teacher: {model}")
    if args.probe_dir is not None:  # bin/probe_teacher, in this process
        from espnet2_stacking.bin import probe_teacher

        probe_teacher.main([
            "--teacher", str(model), "--data_dir", str(args.probe_dir),
            "--labels", str(args.out_dir / "labels" / args.probe_dir.name / "text"),
            "--out_dir", str(args.out_dir / "probe"), "--seed", str(args.seed),
            "--num_threads", str(args.num_threads),
        ])

if __name__ == "__main__":
    main()
