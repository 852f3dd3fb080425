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


def stored(out, stream):
    """utt -> the frames a dump's list gives (rows of its shard)."""
    from espnet2_stacking.data.cropped_npy import NpyFramesReader

    reader = NpyFramesReader(out / f"{stream}.scp")
    return {u: reader[u]["frames"][:] for u in reader.keys()}


def test_dump_matches_the_teacher_run_alone(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 5)
    out = tmp_path / "dump"
    summary = dump_teacher_states(data, out, TEACHER, [4, 2], nj=1, max_batch_seconds=2.0,
                                  shard_size=8000)
    assert summary["utterances"] == 5 and summary["dumped_now"] == 5 and summary["layers"] == [2, 4]
    assert 1 < summary["shards"] < 5  # a few files per layer, each several utterances
    teacher = load_upstream(TEACHER)
    for t in (2, 4):
        frames = stored(out, f"layer_{t}")
        for utt in read_data_dir(data):
            wav, _ = sf.read(utt.path, dtype="float32")
            states, _ = teacher.extract_features(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
            array = frames[utt.utt_id]
            assert array.dtype == np.float16 and array.shape == (num_frames(utt.num_samples), 32)
            assert np.allclose(array, states[t][0].numpy(), atol=2e-2, rtol=1e-2)
    scp = (out / "layer_4.scp").read_text().splitlines()
    assert len(scp) == 5 and ".npy:" in scp[0].split()[1]
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert all(int(frames[u.utt_id]) == num_frames(u.num_samples) for u in read_data_dir(data))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["hidden_size"] == 32 and meta["layers"] == [2, 4]


@pytest.mark.slow  # spawns processes
def test_spawned_jobs_write_what_one_job_in_process_writes(tmp_path, monkeypatch):
    """nj=2 with several batches spawns two jobs; one job runs in this process."""
    data = write_data_dir(tmp_path / "data", "train", 6)
    dump_teacher_states(data, tmp_path / "one", TEACHER, [2], nj=1, max_batch_seconds=2.0,
                        shard_size=4000)
    spawned = []
    real_spawn = dump_module._spawn_jobs
    def spy(todo, *args):
        spawned.append(len(todo))
        return real_spawn(todo, *args)
    monkeypatch.setattr(dump_module, "_spawn_jobs", spy)
    dump_teacher_states(data, tmp_path / "two", TEACHER, [2], nj=2, max_batch_seconds=2.0,
                        shard_size=4000)
    assert spawned and spawned[0] >= 2
    one, two = stored(tmp_path / "one", "layer_2"), stored(tmp_path / "two", "layer_2")
    for utt in read_data_dir(data):
        assert np.allclose(one[utt.utt_id], two[utt.utt_id], atol=1e-2)


def test_rerun_skips_finished_shards_and_refuses_another_teacher_or_codec(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 4)
    out = tmp_path / "dump"
    first = dump_teacher_states(data, out, TEACHER, [2], nj=1, shard_size=2000)
    assert first["shards"] == 4  # each utterance is over 2000 stored bytes
    victim = sorted((out / "layer_2").glob("shard_*.npy"))[0]
    (out / "shards" / f"{victim.stem}.json").unlink()  # its record: the shard is not done
    (out / "layer_2" / ".leftover.123.tmp.npy").write_bytes(b"partial")
    again = dump_teacher_states(data, out, TEACHER, [2], nj=2, shard_size=2000)
    assert again["dumped_now"] == 1 and again["shards_dumped_now"] == 1 and victim.exists()
    assert "leftover" not in (out / "layer_2.scp").read_text()
    with pytest.raises(ValueError, match="another teacher, layers, codec or shard size"):
        dump_teacher_states(data, out, "random:hubert?layers=4&dim=32&seed=1", [2], shard_size=2000)
    with pytest.raises(ValueError, match="another teacher, layers, codec or shard size"):
        dump_teacher_states(data, out, TEACHER, [2], shard_size=2000, codec="int8")


def test_refuses_when_disk_is_short(tmp_path, monkeypatch):
    data = write_data_dir(tmp_path / "data", "train", 3)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dump_module.shutil, "disk_usage", lambda p: usage(100, 90, 10))
    with pytest.raises(OSError, match=r"the fp16 dump needs .* GB more, .* GB is free"):
        dump_teacher_states(data, tmp_path / "dump", TEACHER, [2, 4])
    assert not list((tmp_path / "dump").glob("layer_*/*.npy"))


def test_the_disk_check_and_the_log_use_the_projected_size_of_each_codec(tmp_path, monkeypatch, caplog):
    """Projected bytes per codec are printed before anything is written; the check uses the
    chosen codec's: a disk too small for fp16 takes an int8 dump."""
    import logging

    data = write_data_dir(tmp_path / "data", "train", 3)
    frames = sum(num_frames(u.num_samples) for u in read_data_dir(data))
    fp16, int8 = frames * 2 * 32 * 2, frames * 2 * 34  # layers 2 and 4, 32 wide
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dump_module.shutil, "disk_usage", lambda p: usage(10**9, 0, (fp16 + int8) // 2))
    caplog.set_level(logging.INFO)
    with pytest.raises(OSError, match="the fp16 dump needs"):
        dump_teacher_states(data, tmp_path / "a", TEACHER, [2, 4])
    assert f"fp16 {fp16 / 1e9:.3f} GB" in caplog.text and f"pq (M=8) {frames * 2 * 8 / 1e9:.3f} GB" in caplog.text
    summary = dump_teacher_states(data, tmp_path / "b", TEACHER, [2, 4], codec="int8")
    assert summary["projected_bytes"]["int8"] == int8 and summary["projected_bytes"]["fp16"] == fp16
    assert f"writing int8: {int8 / 1e9:.3f} GB" in caplog.text


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


def test_a_rerun_catches_a_shard_file_replaced_after_its_record(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 2)
    out = tmp_path / "dump"
    dump_teacher_states(data, out, TEACHER, [2], nj=1, shard_size=0)  # one file per utterance
    utts = read_data_dir(data)
    assert (out / "layer_2" / f"{utts[0].utt_id}.npy").is_file()
    np.save(out / "layer_2" / f"{utts[0].utt_id}.npy", np.zeros((3, 32), np.float16))
    with pytest.raises(ValueError, match=f"layer_2/{utts[0].utt_id}.npy: .*its record says"):
        dump_teacher_states(data, out, TEACHER, [2], nj=1, shard_size=0)


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
        for array in stored(out, "layer_2").values():
            array = array.astype(np.float32)
            assert np.isfinite(array).all() and 0.5 < np.abs(array).max() < 20


@pytest.mark.slow
def test_sigkill_mid_pq_dump_then_rerun_completes(tmp_path):
    data = write_data_dir(tmp_path / "data", "train", 40)
    out = tmp_path / "dump"
    cmd = [sys.executable, "-m", "espnet2_stacking.bin.dump_teacher_feats", "--data_dir", str(data),
           "--out_dir", str(out), "--teacher", "random:hubert?layers=4&dim=64&ffn=256", "--layers", "2,4",
           "--max_batch_seconds", "0.5", "--codec", "pq", "--num_codebooks", "8",
           "--shard_size", "800", "--codebook_frames", "600"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # faiss's k-means threads spin on a busy CPU
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "shards").exists() and len(list((out / "shards").glob("*.json"))) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job group, workers included
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the dump finished before the kill"
    assert not (out / "layer_4.scp").exists()  # lists come only after the final check
    shards = len(json.loads((out / "shards.json").read_text())["shards"])
    done = len(list((out / "shards").glob("*.json")))
    digests = json.loads((out / "meta.json").read_text())["codec_digests"]
    assert 3 <= done < shards
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utterances"] == 40 and summary["shards_dumped_now"] <= shards - done + 1
    # the rerun encoded with the codecs the first run trained, and every shard checks out
    assert json.loads((out / "meta.json").read_text())["codec_digests"] == digests
    meta = json.loads((out / "meta.json").read_text())
    names = [f"shard_{k:05d}" for k in range(shards)]
    widths = {"layer_2": 64, "layer_4": 64}
    verify(out, read_data_dir(data), names, widths, meta)
    for t in (2, 4):  # a temporary name left by the kill is never listed
        lines = (out / f"layer_{t}.scp").read_text().splitlines()
        assert len(lines) == 40 and all("/." not in line for line in lines)
    codes = stored(out, "layer_4")
    assert all(c.dtype == np.uint8 and c.shape[1] == 8 for c in codes.values())


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
    state_file = out / "layer_2" / "shard_00000.npy"
    before = state_file.read_bytes()
    summary = dump_teacher_states(data, out, TEACHER, [2], nj=1, max_batch_seconds=2.0,
                                  cnn_features=True)
    assert summary["dumped_now"] == 4 and summary["cnn_features"]
    assert json.loads((out / "meta.json").read_text())["cnn_features"] is True
    assert state_file.read_bytes() == before  # same teacher, same states
    teacher = load_upstream(TEACHER)
    cnn_frames = stored(out, "cnn")
    for utt in read_data_dir(data):
        wav, _ = sf.read(utt.path, dtype="float32")
        with torch.no_grad():
            cnn, _ = teacher._module.feature_extractor(torch.from_numpy(wav)[None], None)
        array = cnn_frames[utt.utt_id]
        assert array.dtype == np.float16 and array.shape == (num_frames(utt.num_samples), teacher.cnn_channels)
        assert np.allclose(array, cnn[0].numpy(), atol=2e-2, rtol=1e-2)
    # a later run without cnn_features keeps them (and the meta says so)
    assert dump_teacher_states(data, out, TEACHER, [2], nj=1)["dumped_now"] == 0
    assert json.loads((out / "meta.json").read_text())["cnn_features"] is True
    # a CNN shard of the wrong width is caught by name
    np.save(out / "cnn" / "shard_00000.npy", np.zeros((3, 7), np.float16))
    with pytest.raises(ValueError, match=r"cnn/shard_00000.npy: .*its record says"):
        dump_teacher_states(data, out, TEACHER, [2], nj=1)


def test_jobs_of_an_int8_dump_share_the_codecs_made_first_and_a_final_run_lists_them(tmp_path):
    """The recipe's order: codecs (train set, copied to dev), then jobs J/N, then one run that
    checks and lists; a job started before the codecs exist is refused."""
    data = write_data_dir(tmp_path / "data", "train", 6)
    out = tmp_path / "dump"
    with pytest.raises(ValueError, match="needs its codec files first"):
        dump_teacher_states(data, out, TEACHER, [2], codec="int8", job=(0, 2))
    dump_teacher_states(data, out, TEACHER, [2], codec="int8", codecs_only=True)
    assert (out / "codecs/layer_2.npz").is_file() and not (out / "shards.json").exists()
    done = [dump_teacher_states(data, out, TEACHER, [2], codec="int8", job=(j, 2))["dumped_now"]
            for j in (0, 1)]
    assert sum(done) == 6 and min(done) > 0 and not (out / "layer_2.scp").exists()
    summary = dump_teacher_states(data, out, TEACHER, [2], codec="int8")
    # the jobs' plan (shards for 4 a job, of 2) is the one the final run keeps
    assert summary["dumped_now"] == 0 and summary["shards"] == 5
    assert all(a.dtype == np.int8 and a.shape[1] == 34 for a in stored(out, "layer_2").values())
