#!/usr/bin/env python3
"""Run a stage's jobs (a jobs file written by distill.sh) on this machine or a cluster, through
ESPnet's parallel engine (espnet3.parallel); see espnet2_stacking.pipelines.jobs.

Example:
    python -m espnet2_stacking.bin.run_jobs --jobs exp/.jobs.decode --job_class cpu \
        --max_jobs 4 --parallel_config conf/parallel.yaml
    # what a scheduler class would submit, nothing submitted:
    python -m espnet2_stacking.bin.run_jobs --print_job_script gpu --parallel_config conf/parallel.yaml
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.data.parallel_config import ParallelConfigError
from espnet2_stacking.pipelines.jobs import job_script, read_job_class, read_jobs, run_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, help="Jobs file: '<name>\\t<log>\\t<command>' lines")
    parser.add_argument("--job_class", default="cpu",
                        help="Class of the parallel config the jobs run in (cpu, gpu)")
    parser.add_argument("--parallel_config", type=Path, default=None,
                        help="The site's parallel YAML; none or missing: local processes")
    parser.add_argument("--max_jobs", type=int, default=1,
                        help="Jobs at once (local; a cluster class's n_workers overrides it)")
    parser.add_argument("--ngpu", type=int, default=0,
                        help="GPUs of this machine dealt to local jobs (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--print_job_script", metavar="CLASS", default=None,
                        help="Print the job script a scheduler class would submit, and exit")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (run_jobs) %(levelname)s: %(message)s")
    # Dask's own start-up and shut-down chatter would bury which job ran where
    def ours_or_warning(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(("distributed", "dask"))

    for handler in logging.getLogger().handlers:
        handler.addFilter(ours_or_warning)
    args = get_parser().parse_args(cmd)
    try:
        if args.print_job_script:
            print(job_script(args.parallel_config, args.print_job_script))
            return
        if args.jobs is None:
            sys.exit("run_jobs: --jobs is required")
        if args.max_jobs < 1:
            sys.exit(f"run_jobs: --max_jobs must be at least 1, got {args.max_jobs}")
        run_jobs(read_jobs(args.jobs), read_job_class(args.parallel_config, args.job_class),
                 args.max_jobs, ngpu=args.ngpu)
    except ParallelConfigError as e:  # a bad config, or a failed job (JobsError)
        sys.exit(f"run_jobs: {e}")


if __name__ == "__main__":
    main()
