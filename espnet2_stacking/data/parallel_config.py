"""The site's parallel config (``conf/parallel.yaml``): a job class per kind of node (cpu, gpu),
each an ``espnet3.parallel`` (Dask; dask-jobqueue for Slurm, SGE/UGE, PBS...) config, and the
Dask client of a class's cluster.

Two kinds of work run through it: a recipe stage's jobs, each a shell command
(:mod:`espnet2_stacking.pipelines.jobs`), and the per-file work of data preparation and
teacher labelling (:func:`espnet2_stacking.data.audio_check.parallel_imap`), whose items go to
the class's workers when the class is a cluster.

A class::

    cpu:
      env: local               # local | slurm | sge | pbs | lsf | htcondor | moab | oar | ssh
      n_workers: 4             # Dask workers (cluster jobs) at most; default: the caller's --nj
      options: {}              # keyword arguments of the Dask cluster (SLURMCluster(...), ...)
      omp_num_threads: null    # OMP_NUM_THREADS of each job (local default: cores / workers)
      warm_start: true         # local CPU python jobs fork from one preloaded process
"""

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import yaml

LOCAL = "local"
CLASS_KEYS = {"env", "n_workers", "options", "omp_num_threads", "warm_start"}
# a worker runs one job at a time on a scheduler's node: the job owns the node's cores/GPU
JOB_RESOURCE = "recipe_job"


class ParallelConfigError(RuntimeError):
    """A parallel config that cannot be used, named with what is wrong."""


def known_envs() -> List[str]:
    from espnet3.parallel.parallel import CLUSTER_MAP

    return [LOCAL, *CLUSTER_MAP]


def read_job_class(config_path: Optional[Path], job_class: str) -> dict:
    """The class's settings from the site's parallel config; local when none is given."""
    if config_path is None or not Path(config_path).exists():
        return {"env": LOCAL}
    conf = yaml.safe_load(Path(config_path).read_text()) or {}
    if not isinstance(conf, dict):
        raise ParallelConfigError(f"{config_path}: expected a mapping of job classes (cpu:, gpu:)")
    if job_class not in conf:
        logging.info(f"{config_path} has no class '{job_class}': its jobs run locally")
        return {"env": LOCAL}
    entry = conf[job_class] or {}
    unknown = set(entry) - CLASS_KEYS
    if unknown:
        raise ParallelConfigError(f"{config_path}: class '{job_class}' has unknown keys {sorted(unknown)} "
                        f"(known: {sorted(CLASS_KEYS)})")
    env = entry.get("env", LOCAL)
    if env != LOCAL and env not in known_envs():
        raise ParallelConfigError(f"{config_path}: class '{job_class}': env '{env}' is none of {known_envs()}")
    if not isinstance(entry.get("options") or {}, dict):
        raise ParallelConfigError(f"{config_path}: class '{job_class}': options must be a mapping")
    return entry


def engine_config(entry: dict, num_workers: int, num_jobs: Optional[int] = None):
    """The ``espnet3.parallel`` config of a class: its n_workers (else num_workers) workers,
    never more than num_jobs (a scheduler job without a recipe job would only wait)."""
    from omegaconf import OmegaConf

    env = entry.get("env", LOCAL)
    options = dict(entry.get("options") or {})
    if env == LOCAL:
        # threads of this process: each job is a child process, so a worker only waits on it
        options = {"processes": False, "threads_per_worker": 1, "dashboard_address": ":0",
                   **options}
    elif env != "ssh":
        # one job at a time per worker, whatever cores the scheduler job holds
        extra = list(options.get("worker_extra_args") or [])
        options["worker_extra_args"] = extra + ["--resources", f"{JOB_RESOURCE}=1"]
    workers = int(entry.get("n_workers") or num_workers)
    if num_jobs is not None:
        workers = max(1, min(workers, num_jobs))
    return OmegaConf.create({"env": env, "n_workers": workers, "options": options})


@contextmanager
def cluster_client(config):
    """A Dask client of the class's cluster: espnet3.parallel builds it; a local one is
    Dask's LocalCluster (what espnet3.parallel builds too), made here without espnet3's import
    of torch, seconds a stage's job list need not wait for on this machine."""
    if config.env != LOCAL:
        from espnet3.parallel.parallel import get_client

        with get_client(config) as client:
            yield client
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=config.n_workers, **config.options) as cluster, \
            Client(cluster) as client:
        yield client


def _apply_chunk(fn, chunk: list) -> list:
    """On a worker: fn over a chunk of items (a task a chunk: Dask's overhead per task is a
    millisecond or so, more than checking one audio file's header)."""
    return [fn(item) for item in chunk]


def cluster_imap(fn, items: list, entry: dict, nj: int, chunksize: int) -> Iterator[list]:
    """fn over items on the workers of a job class's cluster, in input order, a chunk of
    results at a time. Closing the iterator early cancels what has not run."""
    chunks = [items[i:i + chunksize] for i in range(0, len(items), chunksize)]
    config = engine_config(entry, nj, len(chunks))
    resources = {} if config.env in (LOCAL, "ssh") else {"resources": {JOB_RESOURCE: 1}}
    with cluster_client(config) as client:
        futures = [client.submit(_apply_chunk, fn, chunk, pure=False, **resources)
                   for chunk in chunks]
        try:
            for future in futures:
                yield future.result()
        finally:
            client.cancel(futures)


def add_parallel_arguments(parser) -> None:
    """--parallel_config and --job_class, for an entry point whose per-file work may run on a
    cluster (data preparation, teacher labelling)."""
    parser.add_argument("--parallel_config", type=Path, default=None,
                        help="The site's parallel YAML (conf/parallel.yaml); a cluster job "
                             "class runs the per-file work on its workers; none or missing: "
                             "--nj local processes")
    parser.add_argument("--job_class", default="cpu",
                        help="The class of --parallel_config the work runs in")


def job_class_from_args(args, prog: str) -> dict:
    """The job class the arguments name (local without a config); a bad config exits with
    its error."""
    try:
        return read_job_class(args.parallel_config, args.job_class)
    except ParallelConfigError as e:
        raise SystemExit(f"{prog}: error: {e}")
