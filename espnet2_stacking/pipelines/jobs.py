"""Run a recipe stage's parallel jobs through ESPnet's parallel engine, on this machine or on a
cluster, one log per job; the first failure stops the stage, naming the job and its log.

The engine is ``espnet3.parallel`` (Dask; dask-jobqueue for Slurm, SGE/UGE, PBS, LSF,
HTCondor; SSH clusters), so no scheduler is written here: a job is one shell command that a Dask
worker runs with its output in the job's log.

Jobs file (what ``distill.sh`` writes; one job a line, tab separated):
    <name>\\t<log file>\\t<bash command line>

Parallel config (one YAML per site, ``conf/parallel.yaml``): a job class per kind of node,
each an ``espnet3.parallel`` config::

    cpu:                       # jobs of a run with --ngpu 0: dump, ASR trainings, decoding
      env: local               # local | slurm | sge | pbs | lsf | htcondor | moab | oar | ssh
      n_workers: 4             # Dask workers (cluster jobs) at most; default: --max_jobs
      options: {}              # keyword arguments of the Dask cluster (SLURMCluster(...), ...)
      omp_num_threads: null    # OMP_NUM_THREADS of each job (local default: cores / workers)
    gpu:                       # the same with --ngpu > 0 (a dump or decoding job: one GPU)
      env: slurm
      options: {queue: gpu, cores: 8, memory: 64GB, job_extra_directives: ["--gres=gpu:1"]}

A missing file, or a class it lacks, runs the jobs as local processes (the default).
"""

import logging
import os
import shlex
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet2_stacking.data.parallel_config import (  # noqa: F401 (jobs' API: the config too)
    JOB_RESOURCE,
    LOCAL,
    ParallelConfigError,
    cluster_client,
    engine_config,
    known_envs,
    read_job_class,
)


class JobsError(ParallelConfigError):
    """Bad jobs file or parallel config, or a job that failed (named, with its log)."""


@dataclass(frozen=True)
class Job:
    name: str
    log: str
    command: str  # a bash command line


def read_jobs(path: Path) -> List[Job]:
    jobs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise JobsError(f"{path}:{n}: expected '<name>\\t<log>\\t<command>', got {line!r}")
        jobs.append(Job(*fields))
    if not jobs:
        raise JobsError(f"{path}: no jobs")
    return jobs


def job_script(config_path: Path, job_class: str) -> str:
    """The script a dask-jobqueue class would submit for one worker (nothing is submitted)."""
    from espnet3.parallel.parallel import CLUSTER_MAP

    entry = read_job_class(config_path, job_class)
    env = entry.get("env", LOCAL)
    if env in (LOCAL, "ssh"):
        raise JobsError(f"class '{job_class}' of {config_path} runs on env '{env}': no job script")
    cluster = CLUSTER_MAP[env](**engine_config(entry, 1).options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _run_one(job: Job, cwd: str, env: Dict[str, str], stop_name: str) -> dict:
    """On a worker: run one job into its log, unless an earlier job failed."""
    from distributed import Event

    if Event(stop_name).is_set():
        return {"started": False, "rc": None, "host": socket.gethostname()}
    log = Path(cwd, job.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {job.name} on {socket.gethostname()}\n# {job.command}\n")
        f.flush()
        rc = subprocess.run(["bash", "-c", job.command], cwd=cwd, stdout=f,
                            stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
        f.write(f"# exit {rc}\n")
    if rc != 0:
        # set here, before the worker takes its next job (the client would learn it later)
        Event(stop_name).set()
    return {"started": True, "rc": rc, "host": socket.gethostname()}


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def job_env(entry: dict, index: int, workers: int, ngpu: int) -> Dict[str, str]:
    """Environment a job gets beyond the worker's: threads, and on this machine its GPU."""
    env = {}
    threads = entry.get("omp_num_threads")
    options = entry.get("options") or {}
    if threads is None and entry.get("env", LOCAL) == LOCAL and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))  # cores shared by the jobs
    elif threads is None and options.get("cores"):
        # a scheduler job's cores, not its node's: torch would take every core it sees
        threads = max(1, int(options["cores"]) // max(1, int(options.get("processes") or 1)))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if entry.get("env", LOCAL) == LOCAL and ngpu > 0:
        # dealt round robin, as the jobs are; a scheduler assigns GPUs to its own jobs
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(ngpu)]
        env["CUDA_VISIBLE_DEVICES"] = devices[index % min(ngpu, len(devices))]
    return env


def run_jobs(jobs: Sequence[Job], entry: dict, max_jobs: int, cwd: Optional[str] = None,
             ngpu: int = 0) -> None:
    """Run the jobs, at most max_jobs at once (locally; a cluster class's n_workers), each into
    its log. After a failure no further job starts; once the started ones end, JobsError names
    every failed job and shows the end of the first one's log."""
    from distributed import Event, as_completed

    cwd = cwd or os.getcwd()
    workers = max(1, min(max_jobs, len(jobs)))
    config = engine_config(entry, workers, len(jobs))
    stop_name = f"recipe-jobs-stop-{uuid.uuid4().hex}"
    resources = {} if config.env in (LOCAL, "ssh") else {"resources": {JOB_RESOURCE: 1}}
    failed = []
    with cluster_client(config) as client:
        stop = Event(stop_name, client=client)
        futures = {}
        for i, job in enumerate(jobs):
            env = job_env(entry, i, config.n_workers, ngpu)
            fut = client.submit(_run_one, job, cwd, env, stop_name, pure=False,
                                key=f"job-{i}-{stop_name}", **resources)
            futures[fut] = job
            logging.info(f"queued {job.name} (log: {job.log})")
        for fut in as_completed(list(futures)):
            job = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # the worker could not run it at all (log dir, lost worker)
                result = {"started": True, "rc": f"{type(e).__name__}: {e}", "host": "?"}
            if not result["started"]:
                logging.info(f"not started after a failure: {job.name}")
            elif result["rc"] == 0:
                logging.info(f"finished {job.name} on {result['host']}")
            else:
                logging.error(f"{job.name} failed on {result['host']} (exit {result['rc']}); "
                              f"log: {job.log}")
                failed.append(job)
                stop.set()
    if failed:
        first = failed[0]
        raise JobsError(
            f"{len(failed)} of {len(jobs)} job(s) failed: "
            + "; ".join(f"{j.name} (log: {j.log})" for j in failed)
            + f"\nthe end of {first.log}:\n{tail(Path(cwd, first.log))}")


def quote(argv: Sequence[str]) -> str:
    """A bash command line for argv (what distill.sh's printf %q writes)."""
    return shlex.join(argv)
