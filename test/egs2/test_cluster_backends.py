"""The stage driver beyond one machine, tested on this one: the teacher dump's jobs run through
ESPnet's parallel engine (a local Dask cluster) and a failed job stops the stage naming it and
its log (that 2 jobs write what 1 writes: test/espnet2_stacking/pipelines/test_jobs.py); a 2-"node" distillation through ESPnet's launcher
(its SSH path, here to localhost; file rendezvous, gloo, one process per node) grows at the same
updates as one process of the same global batch and ends with the same weights."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import run_distill_train_in_process, train_args, write_config, write_data_dir

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"
TEACHER = "random:hubert?layers=4&dim=32&seed=0"


def run_driver(cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    cmd = [str(DISTILL_SH), "--python", sys.executable, "--datadir", "data", "--train_set",
           "train", "--valid_set", "dev", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def tree(root: Path) -> dict:
    """Every file under root (job logs aside) -> its bytes, with root's path taken out."""
    return {str(p.relative_to(root)): p.read_bytes().replace(str(root.resolve()).encode(), b"ROOT")
            for p in sorted(root.rglob("*")) if p.is_file() and "logdir" not in p.parts}


@pytest.mark.slow
def test_dump_jobs_through_the_driver_and_a_failed_job_is_named_with_its_log(tmp_path):
    write_data_dir(tmp_path / "data", "train", 4)
    write_data_dir(tmp_path / "data", "dev", 2, seed=1)
    conf = write_config(tmp_path / "distill_x.yaml")
    # one dev file gone: of the two jobs (each a share of both sets) one fails; the stage stops
    # naming it and its log, and writes no lists
    wav = tmp_path / "data/dev/wav.scp"
    wav.write_text(wav.read_text().replace(".wav\n", ".gone.wav\n", 1))
    res = run_driver(tmp_path, "--stage", "2", "--stop_stage", "3", "--teacher", TEACHER,
                     "--distill_config", str(conf), "--nj", "2", "--dumpdir", "dump",
                     "--expdir", "exp", "--dump_args", "--shard_size 0")
    assert res.returncode == 1
    failed = re.search(r"1 of 2 job\(s\) failed: dump job ([12])/2 \(log: dump/logdir/dump\.\1\.log\)",
                       res.stderr)
    assert failed, res.stderr[-3000:]
    assert ".gone.wav" in res.stderr  # the end of its log
    other = 3 - int(failed.group(1))
    assert f"finished dump job {other}/2" in res.stderr
    assert (tmp_path / f"dump/logdir/dump.{other}.log").read_text().rstrip().endswith("# exit 0")
    assert "Stage 3" not in res.stderr and not (tmp_path / "dump/train/layer_2.scp").exists()


def write_even_data_dir(root: Path, split: str, num_utts: int, seed: int) -> None:
    """Utterances of one length, shorter than the crop: every rank's half of a batch weighs the
    same and nothing is drawn at random, so one process and two see the same numbers."""
    rng = np.random.default_rng(seed)
    out = root / split
    (out / "wavs").mkdir(parents=True)
    rows = []
    for i in range(num_utts):
        uid = f"spk{i % 2}-{split}{i:03d}"
        x = 0.1 * rng.standard_normal(8000)
        sf.write(out / "wavs" / f"{uid}.wav", x.astype(np.float32), 16000)
        rows.append((uid, str((out / "wavs" / f"{uid}.wav").resolve())))
    (out / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in rows))
    (out / "utt2num_samples").write_text("".join(f"{u} 8000\n" for u, _ in rows))


FAKE_SSH = """#!/usr/bin/env bash
# ssh HOST COMMAND...: runs COMMAND here (the test's 'nodes' are this machine)
shift
exec bash -c "$*"
"""


@pytest.mark.slow
def test_two_nodes_through_espnet_launch_match_one_process(tmp_path):
    from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

    for split, n, seed in (("train", 32, 0), ("dev", 4, 1)):
        write_even_data_dir(tmp_path / "data", split, n, seed)
        dump_teacher_states(tmp_path / "data" / split, tmp_path / "dump" / split, TEACHER, [2, 4])
    # 32 utterances in batches of 4 (2 a rank), 12 updates an epoch, 2 epochs (each with a
    # validation and a checkpoint, the slow part): 24 updates, growths 1 -> 2 -> 4 at 8 and 16
    conf = write_config(tmp_path / "distill_x.yaml", num_iters_per_epoch=12, max_epoch=2)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/ssh").write_text(FAKE_SSH)
    (tmp_path / "bin/ssh").chmod(0o755)
    (tmp_path / "parallel.yaml").write_text(yaml.safe_dump(
        {"launch": {"hosts": "localhost,localhost", "envfile": "none"}}))
    common = ["--stage", "3", "--stop_stage", "3", "--dumpdir", "dump", "--distill_config",
              str(conf), "--distill_args", "--num_workers 0"]
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    two = subprocess.Popen([str(DISTILL_SH), "--python", sys.executable, "--datadir", "data",
                            "--train_set", "train", "--valid_set", "dev", *common, "--expdir",
                            "exp2", "--parallel_config", "parallel.yaml"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, **env})
    # meanwhile the reference, one process (in this one: an interpreter start saved), with the
    # options stage 3 gives it
    one = run_distill_train_in_process(train_args(tmp_path, conf, tmp_path / "exp1/distill_x")
                                       + ["--resume", "true", "--num_workers", "0"])
    out2 = two.communicate(timeout=300)[0]
    assert one.returncode == 0, one.stderr[-4000:]
    log = (tmp_path / "exp2/distill_x/train.log")
    assert two.returncode == 0, out2[-2000:] + (log.read_text()[-4000:] if log.exists() else "")
    assert "through espnet2.bin.launch" in out2
    text = log.read_text()
    assert "--dist_world_size 2" in text and "--dist_init_method file://" in text
    assert "all 2 ranks see the same dump" in text
    assert text.count("all 2 ranks agree after the growth") == 2

    def growths(exp):
        rows = [json.loads(r) for r in (tmp_path / exp / "distill_x/stacking.jsonl").read_text().splitlines()]
        return [(r["update"], r["to"]) for r in rows if "to" in r]

    assert growths("exp1") == growths("exp2") == [(8, 2), (16, 4)]
    a = torch.load(tmp_path / "exp1/distill_x/latest.pth", weights_only=True)
    b = torch.load(tmp_path / "exp2/distill_x/latest.pth", weights_only=True)
    assert set(a) == set(b)
    diff = {k: (a[k] - b[k]).abs().max().item() for k in a
            if a[k].is_floating_point() and k != "train_seconds"}
    # Attention key biases get a zero gradient (softmax ignores a shift shared by all keys), so
    # AdamW's normalised step turns the two runs' different rounding noise into steps of up
    # to lr: they are bounded by lr x updates, every other tensor by float tolerance
    key_bias = [k for k in diff if k.endswith("self_attn.linear_k.bias")]
    rest = max(v for k, v in diff.items() if k not in key_bias)
    print(f"largest difference, 2 nodes vs 1 process: {max(diff.values()):.3g} (attention key "
          f"biases), {rest:.3g} elsewhere")
    assert rest < 2e-5, sorted(diff.items(), key=lambda kv: kv[1])[-5:]
    assert max(diff[k] for k in key_bias) < 1e-3 * 24


FAKE_SLURM_PL = """#!/usr/bin/env bash
# stands in for ESPnet's utils/slurm.pl: records what it would submit
printf '%s\\n' "$@" > slurm_pl.args
"""


def test_num_nodes_goes_through_espnet_launch_and_its_slurm_pl(tmp_path):
    """What stage 3 hands to ESPnet's launcher on Slurm, and the launcher to slurm.pl: one
    job of 2 nodes x 8 GPUs whose ranks srun starts, ESPnet's Slurm launcher mode."""
    for split in ("train", "dev"):
        (tmp_path / "dump" / split).mkdir(parents=True)
        (tmp_path / "dump" / split / "meta.json").write_text("{}")
    (tmp_path / "slurm.pl").write_text(FAKE_SLURM_PL)
    (tmp_path / "slurm.pl").chmod(0o755)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/parallel.yaml").write_text(yaml.safe_dump(
        {"launch": {"cmd": f"{tmp_path}/slurm.pl --config conf/slurm.conf", "envfile": "none"}}))
    conf = write_config(tmp_path / "conf/distill_x.yaml")
    res = run_driver(tmp_path, "--stage", "3", "--stop_stage", "3", "--dumpdir", "dump",
                     "--expdir", "exp", "--distill_config", str(conf), "--num_nodes", "2",
                     "--ngpu", "8")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "launching on 2 nodes x 8 GPU(s) through espnet2.bin.launch" in res.stderr
    args = (tmp_path / "slurm_pl.args").read_text().splitlines()
    assert args[:9] == ["--config", "conf/slurm.conf", "--gpu", "8", "--num_threads", "8",
                        "--num_nodes", "2", "exp/distill_x/train.log"]
    assert args[9:12] == ["srun", "--export=ALL", sys.executable]
    cmd = " ".join(args)
    assert "-m espnet2_stacking.bin.distill_train --config" in cmd
    assert "--train_dump_dir dump/train" in cmd
    # ESPnet's Slurm mode: a rank per node spawning a process per GPU; file rendezvous in exp/
    assert cmd.endswith("--ngpu 8 --multiprocessing_distributed true --dist_launcher slurm "
                        f"--dist_init_method file://{tmp_path.resolve()}/exp/.dist_init_"
                        + cmd.split("/exp/.dist_init_")[1])
    # the launcher's distributed options only: the driver's one-node option is not there too
    assert cmd.count("--multiprocessing_distributed") == 1
