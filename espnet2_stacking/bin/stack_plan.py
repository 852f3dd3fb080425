#!/usr/bin/env python3
"""Print the plan of a stacking run as one JSON object, before a long job.

Example:
    python -m espnet2_stacking.bin.stack_plan --method interleaved --depths 3,6,9,12 \
        --targets 4,8,12 --mode l2l --schedule prop:1 --total_updates 1000

Keys: "growths" (each {"from", "to", "src", "lineage"}: new layer i starts as a copy of old
layer src[i]; lineage[i] is the initial layer it descends from), "pairs" (depth -> list of
[student hidden state, teacher hidden state]; state 0 is the transformer input, k the output of
layer k), "boundaries" (the update count of each growth; null without --total_updates).
Bad settings exit with status 2 and a one-line reason.
"""

import argparse
import json
import sys
from typing import List, Optional

from espnet2_stacking.stacking import ANCHORS, METHODS, MODES, StackingConfigError, plan_stacking


def int_list(value: str) -> List[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{value}'")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        sys.stderr.write(f"stack_plan: {message}\n")
        sys.exit(2)


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=METHODS, default="interleaved")
    parser.add_argument("--depths", type=int_list, required=True,
                        help="Depth of each stage, e.g. 3,6,9,12")
    parser.add_argument("--anchor", choices=ANCHORS, default="last",
                        help="interleaved: copy the last (default) or first layer of a group")
    parser.add_argument("--block_size", type=int, default=None,
                        help="midas: block size (default: the first depth)")
    parser.add_argument("--teacher_layers", type=int, default=12, help="Teacher depth L_T")
    parser.add_argument("--targets", type=int_list, default=None,
                        help="Teacher hidden states to predict (default: (g+1) L_T / K)")
    parser.add_argument("--mode", choices=MODES, default="l2l")
    parser.add_argument("--schedule", default="eql",
                        help="eql, prop:<alpha> or fractions such as 0.1,0.2,0.3,0.4")
    parser.add_argument("--total_updates", type=int, default=None,
                        help="Updates of the whole run; without it \"boundaries\" is null")
    return parser


def plan_as_json(args: argparse.Namespace) -> dict:
    plan = plan_stacking(
        args.method, args.depths, anchor=args.anchor, block_size=args.block_size,
        teacher_layers=args.teacher_layers, targets=args.targets, mode=args.mode,
        schedule=args.schedule, total_updates=args.total_updates,
    )
    return {
        "growths": [
            {"from": g.from_depth, "to": g.to_depth, "src": list(g.src), "lineage": list(g.lineage)}
            for g in plan.growths
        ],
        "pairs": {str(d): [list(p) for p in pairs] for d, pairs in plan.pairs.items()},
        "boundaries": None if plan.boundaries is None else list(plan.boundaries),
    }


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        out = plan_as_json(args)
    except StackingConfigError as e:
        sys.stderr.write(f"stack_plan: {e}\n")
        sys.exit(2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
