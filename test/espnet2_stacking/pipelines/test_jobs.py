"""Jobs through ESPnet's parallel engine (espnet3.parallel): a local Dask cluster runs them at
once, each into its log, a failure stops the rest and is named; the Slurm, SGE and PBS classes
render the job scripts they would submit; the teacher dump in 2 jobs on 2 workers stores the
same bytes for every utterance as one job."""

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TEACHER, write_data_dir

from espnet2_stacking.data.parallel_config import ParallelConfigError
from espnet2_stacking.pipelines.jobs import (
    Job,
    JobsError,
    job_env,
    job_script,
    python_module_call,
    quote,
    read_job_class,
    read_jobs,
    run_jobs,
    warm_preload,
)

CONF = Path(__file__).parents[3] / "egs2" / "librispeech" / "distill1" / "conf"
LOCAL = {"env": "local"}


def test_jobs_run_at_once_each_into_its_log(tmp_path):
    # each job waits for the other's file: only jobs running at the same time both finish
    jobs = [Job(f"job {i}", f"logs/{i}.log",
                f"touch started.{i}; for t in $(seq 400); do [ -e started.{1 - i} ] && break; "
                f"sleep 0.05; done; [ -e started.{1 - i} ]; echo threads=$OMP_NUM_THREADS")
            for i in (0, 1)]
    run_jobs(jobs, LOCAL, max_jobs=2, cwd=str(tmp_path))
    for i in (0, 1):
        log = (tmp_path / f"logs/{i}.log").read_text()
        assert log.startswith(f"# job {i} on ") and "# exit 0" in log
        assert "threads=" in log


def test_a_failed_job_stops_the_rest_and_is_named_with_its_log(tmp_path):
    jobs = [Job("decoding job 1/3", "logs/1.log", "echo 'bad input in utt7' >&2; exit 3"),
            Job("decoding job 2/3", "logs/2.log", "sleep 1; touch two"),
            Job("decoding job 3/3", "logs/3.log", "touch three")]
    with pytest.raises(JobsError) as e:
        run_jobs(jobs, LOCAL, max_jobs=1, cwd=str(tmp_path))
    msg = str(e.value)
    assert "1 of 3 job(s) failed: decoding job 1/3 (log: logs/1.log)" in msg
    assert "bad input in utt7" in msg  # the end of its log
    # one at a time: the jobs after the failure never started
    assert not (tmp_path / "two").exists() and not (tmp_path / "three").exists()
    assert not (tmp_path / "logs/3.log").exists()


def test_a_job_waits_for_the_jobs_it_names_while_others_take_the_free_worker(tmp_path):
    jobs = [Job("dump", "logs/dump.log", "sleep 1; touch dumped"),
            # submitted before 'fbank' but not ready: 'fbank' takes the second worker meanwhile
            Job("train on the dump", "logs/train.log",
                "[ -e dumped ] && [ -e fbank_done ] && touch trained", after=("logs/dump.log",)),
            Job("fbank", "logs/fbank.log", "[ ! -e dumped ] && touch fbank_done")]
    run_jobs(jobs, LOCAL, max_jobs=2, cwd=str(tmp_path))
    assert (tmp_path / "trained").exists() and (tmp_path / "fbank_done").exists()


def test_a_job_whose_dependency_failed_never_starts(tmp_path):
    jobs = [Job("dump", "logs/dump.log", "echo 'no states for utt3' >&2; exit 1"),
            Job("train", "logs/train.log", "touch trained", after=("logs/dump.log",))]
    with pytest.raises(JobsError, match=r"1 of 2 job\(s\) failed: dump \(log: logs/dump.log\)"):
        run_jobs(jobs, LOCAL, max_jobs=2, cwd=str(tmp_path))
    assert not (tmp_path / "trained").exists() and not (tmp_path / "logs/train.log").exists()


# a job module: what a recipe entry point is to the pool (its own file, run with -m)
PROBE_JOB = """
import json, multiprocessing, os, sys, time
preloaded = "probe_dep" in sys.modules  # imported before this run: by the preload
import probe_dep
if __name__ == "__main__":
    out = sys.argv[1]
    if out == "fail":
        sys.exit("bad input in utt3")
    if out == "raise":
        raise ValueError("utt9 has no samples")
    print("probe job says hello")
    time.sleep(0.3)  # a wall time the seconds file can show
    json.dump({"forked": multiprocessing.parent_process() is not None,
               "preloaded": preloaded, "argv": sys.argv[1:],
               "cwd": os.getcwd(), "threads": os.environ.get("OMP_NUM_THREADS"),
               "site": os.environ.get("SITE_SETTING"),
               "start_method": multiprocessing.get_start_method()}, open(out, "w"))
"""


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "probe_job.py").write_text(PROBE_JOB)
    (tmp_path / "mods" / "probe_dep.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mods"))
    monkeypatch.setenv("SITE_SETTING", "from the worker")
    return quote([sys.executable, "-m", "probe_job"])


def test_python_jobs_fork_from_one_preloaded_process(tmp_path, probe_module):
    import json
    import multiprocessing

    jobs = [Job(f"probe {i}", f"logs/{i}.log", f"{probe_module} out{i}.json --flag 'a b'",
                seconds=f"logs/{i}.seconds") for i in range(3)]
    run_jobs(jobs, {"env": "local", "omp_num_threads": 1}, max_jobs=2, cwd=str(tmp_path))
    for i in range(3):
        got = json.loads((tmp_path / f"out{i}.json").read_text())
        # a child of the forkserver, which imported the job's module before the job ran
        assert got == {"forked": True, "preloaded": True, "argv": [f"out{i}.json", "--flag", "a b"],
                       "cwd": str(tmp_path), "threads": "1", "site": "from the worker",
                       # its own children start as a fresh interpreter's would (a DataLoader's)
                       "start_method": multiprocessing.get_all_start_methods()[0]}
        log = (tmp_path / f"logs/{i}.log").read_text()
        assert f"# probe {i} on " in log and "(warm start)" in log
        assert "probe job says hello" in log and log.endswith("# exit 0\n")
        assert "Warning" not in log, log
        assert float((tmp_path / f"logs/{i}.seconds").read_text()) >= 0.3
    # a rerun adds its seconds to the file's (a resumed stage's time is the sum)
    before = float((tmp_path / "logs/0.seconds").read_text())
    run_jobs(jobs[:1], LOCAL, max_jobs=1, cwd=str(tmp_path))
    assert float((tmp_path / "logs/0.seconds").read_text()) >= before + 0.3


def test_a_warm_job_started_while_another_is_joined_keeps_its_exit_code(tmp_path, probe_module,
                                                                      monkeypatch):
    # The pool's workers are threads of one process. A start in one (which polls every live
    # child) while another reads its child's exit code made one of the two reads find EOF:
    # exit 255 for a job that succeeded. Widen that window: the first job's read of its exit
    # code waits 0.5 s, and the second job starts inside it.
    import multiprocessing.forkserver
    import threading
    import time

    from espnet2_stacking.pipelines import jobs as jobs_module

    read_signed = multiprocessing.forkserver.read_signed
    first_reads, reading = [], threading.Event()

    def slow_read_signed(fd):
        if threading.current_thread().name == "first job":
            first_reads.append(fd)
            if len(first_reads) == 2:  # its 1st read is the child's pid, its 2nd the exit code
                reading.set()
                time.sleep(0.5)
        return read_signed(fd)

    monkeypatch.setattr(multiprocessing.forkserver, "read_signed", slow_read_signed)
    env = {"PYTHONPATH": str(tmp_path / "mods")}
    codes = {}

    def run(name, out):
        (tmp_path / f"{name}.log").touch()  # run_jobs opens it first, with the job's header
        codes[name] = jobs_module._warm_run("probe_job", [out], tmp_path / f"{name}.log",
                                            str(tmp_path), env, ["json"])

    first = threading.Thread(target=run, args=("first job", "a.json"), name="first job")
    first.start()
    assert reading.wait(60), "the first job never read its exit code"
    run("second job", "b.json")
    first.join()
    assert codes == {"first job": 0, "second job": 0}
    assert (tmp_path / "a.json").exists() and (tmp_path / "b.json").exists()


def test_a_warm_job_that_fails_is_named_with_its_message_or_traceback(tmp_path, probe_module):
    jobs = [Job("decode 1", "logs/1.log", f"{probe_module} fail", seconds="s1"),
            Job("decode 2", "logs/2.log", f"{probe_module} raise", seconds="s2")]
    with pytest.raises(JobsError) as e:
        run_jobs(jobs, LOCAL, max_jobs=2, cwd=str(tmp_path))
    assert "2 of 2 job(s) failed" in str(e.value)
    assert "bad input in utt3" in (tmp_path / "logs/1.log").read_text()
    log2 = (tmp_path / "logs/2.log").read_text()
    assert "Traceback" in log2 and "ValueError: utt9 has no samples" in log2
    assert "# exit 1" in log2
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()  # no time: failed


def test_which_jobs_start_warm(tmp_path):
    here = quote([sys.executable, "-m", "espnet2_stacking.bin.score_asr", "--results", "a b"])
    assert python_module_call(here, str(tmp_path)) == (
        "espnet2_stacking.bin.score_asr", ["--results", "a b"])
    # another environment's interpreter, a script, a shell line: a fresh process in bash
    assert python_module_call("/opt/other/bin/python3 -m espnet2.bin.asr_train", "/") is None
    assert python_module_call(f"{sys.executable} script.py", "/") is None
    assert python_module_call("echo hi; exit 3", "/") is None
    jobs = [Job("a", "a.log", here), Job("b", "b.log", "echo hi")]
    assert warm_preload(jobs, LOCAL, 0, str(tmp_path)) == ["espnet2_stacking.bin.score_asr"]
    # off on GPUs, on a scheduler's nodes, when the class says so, and with no python job
    assert warm_preload(jobs, LOCAL, 1, str(tmp_path)) is None
    assert warm_preload(jobs, {"env": "slurm"}, 0, str(tmp_path)) is None
    assert warm_preload(jobs, {"env": "local", "warm_start": False}, 0, str(tmp_path)) is None
    assert warm_preload(jobs[1:], LOCAL, 0, str(tmp_path)) is None


def test_job_env_deals_threads_and_gpus():
    assert job_env({"env": "local", "omp_num_threads": 3}, 0, 2, 0) == {"OMP_NUM_THREADS": "3"}
    gpus = [job_env(LOCAL, i, 4, ngpu=2)["CUDA_VISIBLE_DEVICES"] for i in range(4)]
    assert gpus == ["0", "1", "0", "1"]
    # a scheduler job: its own cores, and its GPU is the scheduler's to assign
    env = job_env({"env": "slurm", "options": {"cores": 8, "processes": 1}}, 1, 4, ngpu=2)
    assert env == {"OMP_NUM_THREADS": "8"}


def test_engine_config_caps_workers_and_runs_one_job_per_scheduler_worker():
    from espnet2_stacking.pipelines.jobs import engine_config

    local = engine_config(LOCAL, 4, num_jobs=2)
    assert local.n_workers == 2 and local.options["processes"] is False
    slurm = engine_config({"env": "slurm", "n_workers": 16, "options": {"cores": 8}}, 4, num_jobs=3)
    assert slurm.n_workers == 3  # never a scheduler job without a recipe job
    assert list(slurm.options["worker_extra_args"]) == ["--resources", "recipe_job=1"]


def test_bad_jobs_file_and_config_are_named(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text("ok\tlog\techo\nbroken line without tabs\n")
    with pytest.raises(JobsError, match=r"jobs:2: expected '<name>\\t<log>\\t<command>"):
        read_jobs(jobs)
    jobs.write_text("ok\tlog\techo\tlog.seconds\n")
    assert read_jobs(jobs) == [Job("ok", "log", "echo", "log.seconds")]
    jobs.write_text("a\ta.log\techo\t-\nb\tb.log\techo\tb.sec\ta.log\nc\tc.log\techo\t-\ta.log,b.log\n")
    assert read_jobs(jobs) == [Job("a", "a.log", "echo"), Job("b", "b.log", "echo", "b.sec", ("a.log",)),
                               Job("c", "c.log", "echo", None, ("a.log", "b.log"))]
    jobs.write_text("b\tb.log\techo\t-\ta.log\na\ta.log\techo\n")
    with pytest.raises(JobsError, match=r"jobs:1: job 'b' waits for \['a.log'\], which no earlier"):
        read_jobs(jobs)
    jobs.write_text("a\ta.log\techo\na2\ta.log\techo\n")
    with pytest.raises(JobsError, match=r"jobs:2: two jobs write a.log"):
        read_jobs(jobs)
    conf = tmp_path / "parallel.yaml"
    conf.write_text(yaml.safe_dump({"gpu": {"env": "slrum"}}))
    with pytest.raises(ParallelConfigError, match="class 'gpu': env 'slrum' is none of"):
        read_job_class(conf, "gpu")
    conf.write_text(yaml.safe_dump({"gpu": {"env": "slurm", "cores": 8}}))
    with pytest.raises(ParallelConfigError, match=r"unknown keys \['cores'\]"):
        read_job_class(conf, "gpu")
    assert read_job_class(conf, "cpu") == LOCAL  # a class the file lacks runs here
    assert read_job_class(tmp_path / "missing.yaml", "gpu") == LOCAL
    with pytest.raises(JobsError, match="no job script"):
        job_script(None, "gpu")


def test_slurm_sge_pbs_classes_render_their_job_scripts():
    python = sys.executable
    slurm = job_script(CONF / "parallel_slurm.yaml", "gpu")
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 24:00:00", "#SBATCH --gres=gpu:1",
                 "source ../../../tools/activate_python.sh"):
        assert line in slurm.splitlines(), (line, slurm)
    worker = slurm.splitlines()[-1]
    # this venv's python runs a Dask worker that takes one recipe job at a time
    assert worker.startswith(f"{python} -m distributed.cli.dask_worker tcp://")
    assert "--nthreads 8" in worker and "--resources recipe_job=1" in worker
    cpu = job_script(CONF / "parallel_slurm.yaml", "cpu")
    assert "#SBATCH -p cpu" in cpu and "#SBATCH --cpus-per-task=4" in cpu and "gres" not in cpu
    sge = job_script(CONF / "parallel_sge.yaml", "gpu").splitlines()
    for line in ("#$ -q gpu.q", "#$ -l gpu=1,h_vmem=4G,mem_free=32G", "#$ -l h_rt=24:00:00",
                 "#$ -pe smp 8", "#$ -cwd", "#$ -V"):
        assert line in sge, (line, sge)
    assert "--resources recipe_job=1" in sge[-1] and sge[-1].startswith(python)
    pbs = job_script(CONF / "parallel_pbs.yaml", "gpu").splitlines()
    for line in ("#PBS -q gpu", "#PBS -l select=1:ncpus=8:ngpus=1:mem=32GB",
                 "#PBS -l walltime=24:00:00", "cd $PBS_O_WORKDIR"):
        assert line in pbs, (line, pbs)
    assert "--resources recipe_job=1" in pbs[-1] and pbs[-1].startswith(python)


@pytest.mark.slow
def test_dump_in_two_jobs_on_two_workers_is_byte_identical_to_one_job(tmp_path):
    from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

    data = write_data_dir(tmp_path / "data", "train", 6)
    # one thread a job in both runs: CPU kernels split over other thread counts round the
    # last bits differently (a GPU dump does not depend on it)
    local = {"env": "local", "omp_num_threads": 1}

    def dump(out: str, nj: int) -> dict:
        # small shards and batches: several, so both jobs of two dump some
        jobs = [Job(f"dump job {j}/{nj}", f"{out}/logdir/dump.{j}.log", quote([
            sys.executable, "-m", "espnet2_stacking.bin.dump_teacher_feats", "--data_dir", str(data),
            "--out_dir", out, "--teacher", TEACHER, "--layers", "2,4", "--job", f"{j}/{nj}",
            "--max_batch_seconds", "0.6", "--shard_size", "20000"])) for j in range(1, nj + 1)]
        run_jobs(jobs, local, max_jobs=nj, cwd=str(tmp_path))
        for j in range(1, nj + 1):
            log = (tmp_path / f"{out}/logdir/dump.{j}.log").read_text()
            assert f"job {j}/{nj}:" in log and "# exit 0" in log and " 0 utterances" not in log, log
        # the last call verifies and writes the lists; nothing is left to dump
        summary = dump_teacher_states(data, tmp_path / out, TEACHER, [2, 4], nj=1,
                                      max_batch_seconds=0.6, shard_size=20_000)
        assert summary["dumped_now"] == 0 and summary["utterances"] == 6
        return targets(tmp_path / out)

    def targets(root: Path) -> dict:
        """What training reads: each list's utterances' stored frames, as bytes (shard files
        may be cut differently for 1 and 2 jobs), and meta.json and utt2num_frames."""
        out = {name: (root / name).read_bytes() for name in ("meta.json", "utt2num_frames")}
        for scp in sorted(root.glob("*.scp")):
            for line in scp.read_text().splitlines():
                uttid, where = line.split()
                path, start, stop = where.rsplit(":", 2)
                out[f"{scp.name} {uttid}"] = np.load(path, mmap_mode="r")[int(start):int(stop)].tobytes()
        return out

    one, two = dump("one", 1), dump("two", 2)
    assert len(one) == 2 + 2 * 6 and all(len(v) > 0 for v in one.values())
    assert one == two
