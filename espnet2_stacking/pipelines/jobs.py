"""Run a recipe stage's parallel jobs through ESPnet's parallel engine, on this machine or on a
cluster, one log per job; the first failure stops the stage, naming the job and its log.

The engine is ``espnet3.parallel`` (Dask; dask-jobqueue for Slurm, SGE/UGE, PBS, LSF,
HTCondor; SSH clusters), so no scheduler is written here: a job is one shell command that a Dask
worker runs with its output in the job's log.

Jobs file (what ``distill.sh`` writes; one job a line, tab separated):
    <name>\\t<log file>\\t<bash command line>[\\t<seconds file>]

A seconds file gets the job's wall seconds added to it when the job succeeds (written whole,
then renamed), so a stage's times survive resumed runs.

Warm starts: on this machine, a CPU job that is ``<this environment's python> -m MODULE ARGS``
runs in a child forked from one server process per pool that imported the pool's modules once
(:mod:`multiprocessing`'s forkserver, preloaded), not in a fresh interpreter. ESPnet's import
costs 10 to 13 s of CPU a process; a demo run starts about 30 such jobs on 2 cores. Each child
is a fresh fork, so nothing of one job leaks into the next. GPU jobs and scheduler jobs start
fresh interpreters (a fork must not inherit CUDA state; a cluster job is long enough not to
care), as does any other command line.

Parallel config (one YAML per site, ``conf/parallel.yaml``): a job class per kind of node,
each an ``espnet3.parallel`` config::

    cpu:                       # jobs of a run with --ngpu 0: dump, ASR trainings, decoding
      env: local               # local | slurm | sge | pbs | lsf | htcondor | moab | oar | ssh
      n_workers: 4             # Dask workers (cluster jobs) at most; default: --max_jobs
      options: {}              # keyword arguments of the Dask cluster (SLURMCluster(...), ...)
      omp_num_threads: null    # OMP_NUM_THREADS of each job (local default: cores / workers)
      warm_start: true         # python jobs fork from one preloaded process (local CPU jobs)
    gpu:                       # the same with --ngpu > 0 (a dump or decoding job: one GPU)
      env: slurm
      options: {queue: gpu, cores: 8, memory: 64GB, job_extra_directives: ["--gres=gpu:1"]}

A missing file, or a class it lacks, runs the jobs as local processes (the default).
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet2_stacking.data.atomic import atomic_write_text
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
    seconds: Optional[str] = None  # the job's wall seconds are added to this file on success
    after: Tuple[str, ...] = ()  # the logs of earlier jobs that must succeed before it starts


NO_FILE = "-"  # a jobs file's seconds field for a job with no seconds file


def read_jobs(path: Path) -> List[Job]:
    """Lines of '<name>\\t<log>\\t<command>[\\t<seconds file or ->[\\t<logs>]]', where <logs> are
    the comma-separated logs of earlier jobs that this one waits for (a job is named by its
    log, which is its own)."""
    jobs, logs = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (3, 4, 5) or not all(f.strip() for f in fields):
            raise JobsError(f"{path}:{n}: expected '<name>\\t<log>\\t<command>[\\t<seconds file>"
                            f"[\\t<logs of the jobs it waits for>]]', got {line!r}")
        name, log, command = fields[:3]
        seconds = fields[3] if len(fields) > 3 and fields[3] != NO_FILE else None
        after = tuple(fields[4].split(",")) if len(fields) > 4 else ()
        unknown = [a for a in after if a not in logs]
        if unknown:
            raise JobsError(f"{path}:{n}: job '{name}' waits for {unknown}, which no earlier "
                            "job of the file writes as its log")
        if log in logs:
            raise JobsError(f"{path}:{n}: two jobs write {log}")
        logs.add(log)
        jobs.append(Job(name, log, command, seconds, after))
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


def python_module_call(command: str, cwd: str) -> Optional[Tuple[str, List[str]]]:
    """(MODULE, ARGS) when command is ``PYTHON -m MODULE ARGS`` with PYTHON this process's
    environment's interpreter (the same bin dir: a venv's python3 and python are one), else
    None (the command runs in bash)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if len(argv) < 3 or argv[1] != "-m" or not argv[2]:
        return None
    exe = shutil.which(argv[0]) if "/" not in argv[0] else str(Path(cwd, argv[0]))
    if exe is None or Path(exe).parent.resolve() != Path(sys.executable).parent.resolve():
        return None
    return argv[2], argv[3:]


_warm_context = None


def warm_context(preload: Sequence[str]):
    """This process's forkserver, preloading the modules (set once: the first pool's list)."""
    global _warm_context
    if _warm_context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        _warm_context = context
    return _warm_context


def _module_main(module: str, args: List[str], log: str, cwd: str, env: Dict[str, str]) -> None:
    """In a child of the forkserver: what ``python -m module args`` would do, into the log.
    An exception's traceback and a sys.exit message reach the log; the exit code is the job's."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)  # the worker's environment now, as a fresh process would get
    for entry in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    torch = sys.modules.get("torch")
    if torch is not None and "OMP_NUM_THREADS" in env:
        # torch was imported before the job's environment existed
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    # a forkserver's child defaults to forking from a new, empty forkserver: a DataLoader
    # worker would import everything again (13 s); the platform's default, as `python -m` has
    multiprocessing.set_start_method(None, force=True)
    sys.argv = [module, *args]
    sys.modules.pop(module, None)  # preloaded as itself; it runs again as __main__
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# The local pool's workers are threads of one process (processes=False), and multiprocessing's
# bookkeeping of children is not thread-safe there: Process.start() polls every live child of
# the process (multiprocessing.process._cleanup), and a forkserver child's exit code is one
# message read once from a pipe. A start in one thread beside a join in another could read it
# first and leave the join an EOF, which multiprocessing reports as exit code 255: a job that
# succeeded, failed. Starts and joins take this lock; the wait for a child's end does not.
_children_lock = threading.Lock()


def _warm_run(module: str, args: List[str], log: Path, cwd: str, env: Dict[str, str],
              preload: Sequence[str]) -> int:
    child = warm_context(preload).Process(target=_module_main, name=module,
                                          args=(module, args, str(log), cwd, env))
    with _children_lock:
        child.start()
    multiprocessing.connection.wait([child.sentinel])  # readable at the end; reads nothing
    with _children_lock:
        child.join()
    return child.exitcode


def add_seconds(path: Path, seconds: float) -> None:
    """Add seconds to the number in path (none: 0), written whole, then renamed."""
    try:
        before = float(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        before = 0.0
    atomic_write_text(path, f"{before + seconds:.1f}\n")


def _run_one(job: Job, cwd: str, env: Dict[str, str], stop_name: str,
             preload: Optional[Sequence[str]] = None) -> dict:
    """On a worker: run one job into its log, unless an earlier job failed. preload: the
    modules a warm start imports first (None: every job in a fresh process)."""
    from distributed import Event

    if Event(stop_name).is_set():
        return {"started": False, "rc": None, "host": socket.gethostname()}
    log = Path(cwd, job.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    call = python_module_call(job.command, cwd) if preload is not None else None
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {job.name} on {socket.gethostname()}{' (warm start)' if call else ''}\n"
                f"# {job.command}\n")
        f.flush()
        if call:
            rc = _warm_run(*call, log, cwd, {**os.environ, **env}, preload)
        else:
            rc = subprocess.run(["bash", "-c", job.command], cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
    seconds = time.monotonic() - start
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# exit {rc}\n")
    if rc == 0 and job.seconds:
        add_seconds(Path(cwd, job.seconds), seconds)
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


def warm_preload(jobs: Sequence[Job], entry: dict, ngpu: int, cwd: str) -> Optional[List[str]]:
    """The modules a warm start of these jobs preloads; None where jobs start fresh: off in
    the class (``warm_start: false``), on GPUs, on a scheduler's nodes, or no python job."""
    if not entry.get("warm_start", True) or ngpu > 0 or entry.get("env", LOCAL) != LOCAL:
        return None
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    modules = [call[0] for call in (python_module_call(j.command, cwd) for j in jobs) if call]
    return sorted(set(modules)) or None


def run_jobs(jobs: Sequence[Job], entry: dict, max_jobs: int, cwd: Optional[str] = None,
             ngpu: int = 0) -> None:
    """Run the jobs, at most max_jobs at once (locally; a cluster class's n_workers), each into
    its log, in their order as far as ``Job.after`` allows: a job that waits for others starts
    once they have succeeded, and the next ready job takes a free worker meanwhile. After a
    failure no further job starts; once the started ones end, JobsError names every failed job
    and shows the end of the first one's log."""
    import dask
    from distributed import Event, as_completed

    cwd = cwd or os.getcwd()
    workers = max(1, min(max_jobs, len(jobs)))
    config = engine_config(entry, workers, len(jobs))
    preload = warm_preload(jobs, entry, ngpu, cwd)
    if preload:
        logging.info(f"warm starts: python jobs fork from one process that imports {preload} once")
    stop_name = f"recipe-jobs-stop-{uuid.uuid4().hex}"
    resources = {} if config.env in (LOCAL, "ssh") else {"resources": {JOB_RESOURCE: 1}}
    failed, succeeded = [], set()
    # A job is handed to Dask only once the jobs it waits for have succeeded: with no Dask
    # dependencies every job is a root task, which Dask queues at the scheduler and gives to
    # the next free worker, in the file's order (priority). A job that Dask held back for a
    # dependency would instead be placed at once on a worker, possibly a busy one, and wait
    # behind that worker's job while another worker idles.
    waiting = list(range(len(jobs)))
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}), \
            cluster_client(config) as client:
        stop = Event(stop_name, client=client)
        futures = {}
        running = as_completed()

        def submit_ready():
            for i in [i for i in waiting if all(a in succeeded for a in jobs[i].after)]:
                waiting.remove(i)
                env = job_env(entry, i, config.n_workers, ngpu)
                fut = client.submit(_run_one, jobs[i], cwd, env, stop_name, preload, pure=False,
                                    key=f"job-{i}-{stop_name}", priority=len(jobs) - i,
                                    **resources)
                futures[fut] = jobs[i]
                running.add(fut)
                logging.info(f"queued {jobs[i].name} (log: {jobs[i].log})")

        submit_ready()
        for fut in running:
            job = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # the worker could not run it at all (log dir, lost worker)
                result = {"started": True, "rc": f"{type(e).__name__}: {e}", "host": "?"}
            if not result["started"]:
                logging.info(f"not started after a failure: {job.name}")
            elif result["rc"] == 0:
                logging.info(f"finished {job.name} on {result['host']}")
                succeeded.add(job.log)
                if not failed:
                    submit_ready()
            else:
                logging.error(f"{job.name} failed on {result['host']} (exit {result['rc']}); "
                              f"log: {job.log}")
                failed.append(job)
                stop.set()
        for i in waiting:
            logging.info(f"not started after a failure: {jobs[i].name}")
    if failed:
        first = failed[0]
        raise JobsError(
            f"{len(failed)} of {len(jobs)} job(s) failed: "
            + "; ".join(f"{j.name} (log: {j.log})" for j in failed)
            + f"\nthe end of {first.log}:\n{tail(Path(cwd, first.log))}")


def quote(argv: Sequence[str]) -> str:
    """A bash command line for argv (what distill.sh's printf %q writes)."""
    return shlex.join(argv)
