import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TEACHER, write_data_dir

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.pipelines import teacher_dump as dump_module
from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states, verify
from espnet2_stacking.stacking import StackingConfigError
from espnet2_stacking.upstreams import load_upstream


def test_dump_matches_the_teacher_run_alone(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 5)
    out = tmp_path / "dump"
    summary = dump_teacher_states(data, out, TEACHER, [4, 2], nj=1, max_batch_seconds=2.0)
    assert summary["utterances"] == 5 and summary["dumped_now"] == 5 and summary["layers"] == [2, 4]
    teacher = load_upstream(TEACHER)
    for utt in read_data_dir(data):
        wav, _ = sf.read(utt.path, dtype="float32")
        states, _ = teacher.extract_features(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        for t in (2, 4):
            stored = np.load(out / f"layer_{t}" / f"{utt.utt_id}.npy")
            assert stored.dtype == np.float16 and stored.shape == (num_frames(utt.num_samples), 32)
            assert np.allclose(stored, states[t][0].numpy(), atol=2e-2, rtol=1e-2)
    scp = (out / "layer_4.scp").read_text().splitlines()
    assert len(scp) == 5 and scp[0].split()[1].endswith(".npy")
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert all(int(frames[u.utt_id]) == num_frames(u.num_samples) for u in read_data_dir(data))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["hidden_size"] == 32 and meta["layers"] == [2, 4]


@pytest.mark.slow  # spawns processes
def test_spawned_jobs_write_what_one_job_in_process_writes(tmp_path, monkeypatch):
    """nj=2 with several batches spawns two jobs; one job runs in this process."""
    data = write_data_dir(tmp_path / "data", "train", 6)
    dump_teacher_states(data, tmp_path / "one", TEACHER, [2], nj=1, max_batch_seconds=2.0)
    spawned = []
    real_spawn = dump_module._spawn_jobs
    def spy(batches, *args):
        spawned.append(len(batches))
        return real_spawn(batches, *args)
    monkeypatch.setattr(dump_module, "_spawn_jobs", spy)
    dump_teacher_states(data, tmp_path / "two", TEACHER, [2], nj=2, max_batch_seconds=2.0)
    assert spawned and spawned[0] >= 2
    for utt in read_data_dir(data):
        one = np.load(tmp_path / "one/layer_2" / f"{utt.utt_id}.npy")
        two = np.load(tmp_path / "two/layer_2" / f"{utt.utt_id}.npy")
        assert np.allclose(one, two, atol=1e-2)


def test_rerun_skips_finished_files_and_refuses_another_teacher(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 4)
    out = tmp_path / "dump"
    dump_teacher_states(data, out, TEACHER, [2], nj=1)
    victim = sorted((out / "layer_2").glob("*.npy"))[0]
    victim.unlink()
    (out / "layer_2" / ".leftover.123.tmp").write_bytes(b"partial")
    again = dump_teacher_states(data, out, TEACHER, [2], nj=2)
    assert again["dumped_now"] == 1 and victim.exists()
    with pytest.raises(ValueError, match="another teacher or layers"):
        dump_teacher_states(data, out, "random:hubert?layers=4&dim=32&seed=1", [2])


def test_refuses_when_disk_is_short(tmp_path, monkeypatch):
    data = write_data_dir(tmp_path / "data", "train", 3)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dump_module.shutil, "disk_usage", lambda p: usage(100, 90, 10))
    with pytest.raises(OSError, match=r"needs .* GB more, .* GB is free"):
        dump_teacher_states(data, tmp_path / "dump", TEACHER, [2, 4])
    assert not list((tmp_path / "dump").glob("layer_*/*.npy"))


@pytest.mark.parametrize(
    "break_it,match",
    [
        (lambda d: (d / "utt2num_samples").write_text((d / "utt2num_samples").read_text().splitlines()[0] + "\n"),
         "disagree on utterance ids"),
        (lambda d: sf.write(sorted((d / "wavs").glob("*.wav"))[0], np.zeros(8000, np.float32), 8000), "8000 Hz"),
        (lambda d: sorted((d / "wavs").glob("*.wav"))[1].unlink(), "cannot read"),
    ],
)
def test_bad_data_names_the_utterance(tmp_path, break_it, match):
    data = write_data_dir(tmp_path / "data", "train", 3)
    break_it(data)
    with pytest.raises(Exception, match=match):
        dump_teacher_states(data, tmp_path / "dump", TEACHER, [2], nj=1)


def test_verify_catches_a_wrong_file(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 2)
    out = tmp_path / "dump"
    dump_teacher_states(data, out, TEACHER, [2], nj=1)
    utts = read_data_dir(data)
    np.save(out / "layer_2" / f"{utts[0].utt_id}.npy", np.zeros((3, 32), np.float16))
    with pytest.raises(ValueError, match=f"{utts[0].utt_id}.*3 frames"):
        verify(out, utts, [2], 32)


HIGH_NORM = "random:hubert?layers=2&pre_ln=1&gain=100000"  # states ~1e5: past float16's 65504


def test_a_high_norm_teacher_overflowing_float16_is_named_and_layer_norm_fixes_it(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 2)
    first = read_data_dir(data)[0].utt_id
    with pytest.raises(RuntimeError, match=f"utterance '{first}': teacher state 2 is not "
                                                 "finite in float16.*--normalize layer_norm"):
        dump_teacher_states(data, tmp_path / "raw", HIGH_NORM, [2], nj=1)
    assert not (tmp_path / "raw" / "layer_2.scp").exists()
    # the same teacher, normalised per frame (what the dump's --normalize offers), in the
    # precisions a GPU run would use: finite targets of unit scale
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"normed_{dtype}"
        dump_teacher_states(data, out, HIGH_NORM, [2], nj=1, dtype=dtype, normalize="layer_norm")
        for line in (out / "layer_2.scp").read_text().splitlines():
            array = np.load(line.split()[1]).astype(np.float32)
            assert np.isfinite(array).all() and 0.5 < np.abs(array).max() < 20


@pytest.mark.slow
def test_sigkill_mid_dump_then_rerun_completes(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 60)
    out = tmp_path / "dump"
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.dump_teacher_feats", "--data_dir", str(data),
           "--out_dir", str(out), "--teacher", "random:hubert?layers=4&dim=64&ffn=256", "--layers", "2,4",
           "--max_batch_seconds", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "layer_4").exists() and len(list((out / "layer_4").glob("*.npy"))) >= 5:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job group, workers included
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the dump finished before the kill"
    assert not (out / "layer_4.scp").exists()  # lists come only after the final check
    done = len(list((out / "layer_4").glob("*.npy")))
    assert 5 <= done < 60
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utterances"] == 60 and summary["dumped_now"] <= 60 - done + 2
    verify(out, read_data_dir(data), [2, 4], 64)
    for t in (2, 4):  # a temporary name left by the kill is never listed
        assert all(line.split()[1].endswith(".npy") and "/." not in line
                   for line in (out / f"layer_{t}.scp").read_text().splitlines())
    assert len((out / "layer_2.scp").read_text().splitlines()) == 60


def test_one_invocation_dumps_several_data_dirs(tmp_path):
    from espnet2_stacking.bin.dump_teacher_feats import main

    train = write_data_dir(tmp_path / "data", "train", 3)
    dev = write_data_dir(tmp_path / "data", "dev", 2, seed=1)
    main(["--data_dir", str(train), str(dev), "--out_dir", str(tmp_path / "d/train"),
          str(tmp_path / "d/dev"), "--teacher", TEACHER, "--layers", "2"])
    assert len((tmp_path / "d/train/layer_2.scp").read_text().splitlines()) == 3
    assert len((tmp_path / "d/dev/layer_2.scp").read_text().splitlines()) == 2
    with pytest.raises(SystemExit):  # one output dir per data dir
        main(["--data_dir", str(train), str(dev), "--out_dir", str(tmp_path / "x"),
              "--teacher", TEACHER, "--layers", "2"])
    assert not (tmp_path / "d/train/cnn.scp").exists()
    # a distillation config of an earlier version is refused, naming what replaced its keys
    config = tmp_path / "distill.yaml"
    config.write_text("target_layers: [2]\nteacher_hidden_size: 32\nteacher_cnn_features: true\n")
    with pytest.raises(StackingConfigError, match="distill.yaml: --target_layers .*stacking_conf.targets"):
        main(["--data_dir", str(train), "--out_dir", str(tmp_path / "d/train"), "--teacher", TEACHER,
              "--distill_config", str(config)])
    # one with a frozen teacher CNN asks for the CNN output too
    config.write_text("stacking_conf:\n    targets: [2]\nteacher_hidden_size: 32\nstudent_cnn: teacher_frozen\n")
    main(["--data_dir", str(train), "--out_dir", str(tmp_path / "d/train"), "--teacher", TEACHER,
          "--distill_config", str(config)])
    assert len((tmp_path / "d/train/cnn.scp").read_text().splitlines()) == 3
    main(["--data_dir", str(dev), "--out_dir", str(tmp_path / "d/dev"), "--teacher", TEACHER,
          "--distill_config", str(config), "--cnn_features", "false"])  # the option wins
    assert not (tmp_path / "d/dev/cnn.scp").exists()


def test_cnn_features_are_the_teacher_cnn_output_and_can_be_added_to_a_dump(tmp_path):
    """cnn_features stores what a student frontend holding the teacher's CNN computes on the
    utterance alone; asked for later, it is added to a dump without touching its states."""
    data = write_data_dir(tmp_path / "data", "train", 4)
    out = tmp_path / "dump"
    dump_teacher_states(data, out, TEACHER, [2], nj=1, max_batch_seconds=2.0)
    assert not (out / "cnn.scp").exists()
    state_file = out / "layer_2" / f"{read_data_dir(data)[0].utt_id}.npy"
    before = state_file.read_bytes()
    summary = dump_teacher_states(data, out, TEACHER, [2], nj=1, max_batch_seconds=2.0,
                                  cnn_features=True)
    assert summary["dumped_now"] == 4 and summary["cnn_features"]
    assert json.loads((out / "meta.json").read_text())["cnn_features"] is True
    assert state_file.read_bytes() == before  # same teacher, same states
    teacher = load_upstream(TEACHER)
    scp = dict(line.split() for line in (out / "cnn.scp").read_text().splitlines())
    for utt in read_data_dir(data):
        wav, _ = sf.read(utt.path, dtype="float32")
        with torch.no_grad():
            cnn, _ = teacher._module.feature_extractor(torch.from_numpy(wav)[None], None)
        stored = np.load(scp[utt.utt_id])
        assert stored.dtype == np.float16 and stored.shape == (num_frames(utt.num_samples), teacher.cnn_channels)
        assert np.allclose(stored, cnn[0].numpy(), atol=2e-2, rtol=1e-2)
    # a later run without cnn_features keeps them (and the meta says so)
    assert dump_teacher_states(data, out, TEACHER, [2], nj=1)["dumped_now"] == 0
    assert json.loads((out / "meta.json").read_text())["cnn_features"] is True
    # a CNN file of the wrong width is caught by name
    np.save(scp[read_data_dir(data)[1].utt_id], np.zeros((3, 7), np.float16))
    with pytest.raises(ValueError, match=r"cnn/.*expected float16 \(frames, "):
        verify(out, read_data_dir(data), [2], 32, teacher.cnn_channels)
