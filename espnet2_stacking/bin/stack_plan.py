#!/usr/bin/env python3
"""Print the plan of a stacking run as one JSON object, before a long job.

Examples:
    python -m espnet2_stacking.bin.stack_plan --method interleaved --depths 3,6,9,12 \
        --targets 4,8,12 --mode l2l --schedule prop:1 --total_updates 1000
    python -m espnet2_stacking.bin.stack_plan --config conf/distill_interleaved_eql.yaml

The options are ``stacking_conf``'s keys. ``--config`` reads a distillation config: its
``stacking_conf``, ``teacher_num_layers`` and run length (``total_updates``, or ``max_epoch`` x
(``num_iters_per_epoch`` // ``accum_grad``)), as distill_train resolves them, so the plan printed
is the plan the run follows; options given on the command line override the config's.

Keys: "growths" (each {"from", "to", "src", "lineage"}: new layer i starts as a copy of old
layer src[i]; lineage[i] is the initial layer it descends from), "pairs" (depth -> list of
[student hidden state, teacher hidden state]; state 0 is the transformer input, k the output of
layer k), "boundaries" (the update count of each growth; null without a run length).
Bad settings exit with status 2 and a one-line reason.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.core.text import int_list
from espnet2_stacking.stacking import ANCHORS, METHODS, MODES, StackingConfigError, plan_stacking
from espnet2_stacking.tasks.distill_config import count_total_updates, read_distill_config


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        sys.stderr.write(f"stack_plan: {message}\n")
        sys.exit(2)


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="A distillation config (distill_train --config) to plan from")
    # defaults are None so that a --config value is kept unless the option is given
    parser.add_argument("--method", choices=METHODS, default=None, help="default: interleaved")
    parser.add_argument("--depths", type=int_list, default=None,
                        help="Depth of each stage, e.g. 3,6,9,12 (required without --config)")
    parser.add_argument("--anchor", choices=ANCHORS, default=None,
                        help="interleaved: copy the last (default) or first layer of a group")
    parser.add_argument("--block_size", type=int, default=None,
                        help="midas: block size (default: the first depth)")
    parser.add_argument("--teacher_layers", type=int, default=None,
                        help="Teacher depth L_T (default: the config's teacher_num_layers, else 12)")
    parser.add_argument("--targets", type=int_list, default=None,
                        help="Teacher hidden states to predict (default: the config's, else "
                             "(g+1) L_T / K)")
    parser.add_argument("--mode", choices=MODES, default=None, help="default: l2l")
    parser.add_argument("--schedule", default=None,
                        help="eql (default), prop:<alpha> or fractions such as 0.1,0.2,0.3,0.4")
    parser.add_argument("--total_updates", type=int, default=None,
                        help="Updates of the whole run; without it (or a config that gives the "
                             "run's length) \"boundaries\" is null")
    return parser


def plan_kwargs(args: argparse.Namespace) -> dict:
    """plan_stacking's arguments: the command line over the config over the defaults."""
    kwargs = dict(method="interleaved", depths=None, anchor="last", block_size=None,
                  teacher_layers=12, targets=None, mode="l2l", schedule="eql", total_updates=None)
    if args.config is not None:
        conf = read_distill_config(args.config)
        kwargs.update(conf["stacking_conf"])
        kwargs["teacher_layers"] = conf.get("teacher_num_layers", 12)
        if conf.get("total_updates") is not None or conf.get("num_iters_per_epoch") is not None:
            kwargs["total_updates"] = count_total_updates(
                conf.get("total_updates"), conf.get("max_epoch", 100),
                conf.get("num_iters_per_epoch"), conf.get("accum_grad", 1))
    kwargs.update({k: v for k, v in vars(args).items() if k in kwargs and v is not None})
    if kwargs["depths"] is None:
        raise StackingConfigError("give --depths (or --config with stacking_conf.depths)")
    return kwargs


def plan_as_json(args: argparse.Namespace) -> dict:
    kwargs = plan_kwargs(args)
    plan = plan_stacking(kwargs.pop("method"), kwargs.pop("depths"), **kwargs)
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
