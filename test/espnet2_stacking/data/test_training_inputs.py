"""The pre-training check of a run's lists: each bad input named before the first update."""

import shutil

import numpy as np
import pytest
from conftest import TEACHER, run_distill_train_in_process, train_args, write_config, write_data_dir

from espnet2_stacking.data.training_inputs import check_training_inputs
from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """data/train with dumped states 2 and 4 (hidden size 32), one .npy per utterance (the
    file-by-file check; sharded dumps: test_frame_shards.py)."""
    root = tmp_path_factory.mktemp("inputs")
    data = write_data_dir(root / "data", "train", 6)
    dump_teacher_states(data, root / "dump", TEACHER, [2, 4], nj=1, shard_size=0)
    return root


@pytest.fixture()
def copy(split, tmp_path):
    """A private copy whose lists point into the copy, to break freely."""
    root = tmp_path / "c"
    shutil.copytree(split, root)
    for scp in root.rglob("*.scp"):
        scp.write_text(scp.read_text().replace(f"{split}/", f"{root}/"))
    return root


def entries(root):
    return [(f"{root}/data/train/wav.scp", "speech", "sound"),
            (f"{root}/dump/layer_2.scp", "target_2", "npy"),
            (f"{root}/dump/layer_4.scp", "target_4", "npy")]


def shape_file(root):
    return f"{root}/data/train/utt2num_samples"


def npy_of(root, n=2):
    line = (root / "dump/layer_2.scp").read_text().splitlines()[n]
    uttid, path = line.split()
    return uttid, path


def test_good_lists_pass(copy):
    assert check_training_inputs(entries(copy), shape_file(copy), 32) == 6


def test_wav_scp_line_pointing_nowhere(copy):
    scp = copy / "data/train/wav.scp"
    lines = scp.read_text().splitlines()
    uttid = lines[1].split()[0]
    lines[1] = f"{uttid} {copy}/gone/{uttid}.wav"
    scp.write_text("\n".join(lines) + "\n")
    with pytest.raises(FileNotFoundError, match=f"wav.scp: utterance '{uttid}' points to .*gone"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


def test_truncated_npy(copy):
    uttid, path = npy_of(copy)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"utterance '{uttid}': .*truncated"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


def test_npy_of_the_wrong_width(copy):
    uttid, path = npy_of(copy)
    np.save(path, np.load(path)[:, :16])
    with pytest.raises(ValueError, match=rf"utterance '{uttid}': .* \(\d+, 16\), expected \(frames, 32\)"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


def test_npy_whose_frames_do_not_match_the_audio(copy):
    uttid, path = npy_of(copy)
    np.save(path, np.load(path)[:-5])
    with pytest.raises(ValueError, match=f"utterance '{uttid}': .*the dump is not of this audio"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


def test_a_config_width_other_than_the_dump(copy):
    with pytest.raises(ValueError, match=r"expected \(frames, 48\)"):
        check_training_inputs(entries(copy), shape_file(copy), 48)


def test_ids_that_disagree_between_lists(copy):
    scp = copy / "dump/layer_4.scp"
    lines = scp.read_text().splitlines()
    dropped = lines[-1].split()[0]
    scp.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=f"layer_4.scp and .*wav.scp disagree: 1 only in .*wav.scp "
                                         f"\\(e.g. {dropped}\\)"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


def test_malformed_and_repeated_lines(copy):
    scp = copy / "data/train/wav.scp"
    first = scp.read_text().splitlines()[0]
    scp.write_text(scp.read_text() + first + "\n")
    with pytest.raises(ValueError, match=r"wav.scp:7: utterance .* is listed twice"):
        check_training_inputs(entries(copy), shape_file(copy), 32)
    scp.write_text("lonely_id\n")
    with pytest.raises(ValueError, match=r"wav.scp:1: expected '<utt> <value>'"):
        check_training_inputs(entries(copy), shape_file(copy), 32)


@pytest.mark.slow
def test_distill_train_stops_before_training_on_a_bad_list(tiny_corpus, tmp_path):
    """Wired into DistillTask: the error comes before any epoch starts."""
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    for scp in root.rglob("*.scp"):
        scp.write_text(scp.read_text().replace(f"{tiny_corpus}/", f"{root}/"))
    uttid, value = (root / "dump/dev/layer_4.scp").read_text().split("\n")[0].split()
    path = value.rsplit(":", 2)[0]  # the dump's shard holding the utterance's rows
    np.save(path, np.load(path)[:, :8])
    res = run_distill_train_in_process(train_args(root, write_config(tmp_path / "c.yaml"), tmp_path / "exp"))
    assert res.returncode == 1
    assert f"{path}: " in res.stderr and "its record says" in res.stderr
    assert "epoch started" not in res.stderr


def test_a_passed_check_is_recorded_beside_the_dump_and_trusted_while_the_inputs_are_unchanged(copy, monkeypatch):
    """At 960 h the check opens a million headers on every rank at every start: once it passed,
    the dump dir records it, and a start with the same lists skips it; a rewritten list or
    another width checks again."""
    from espnet2_stacking.data import training_inputs

    calls = []
    real = training_inputs.check_training_inputs
    monkeypatch.setattr(training_inputs, "check_training_inputs",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    once = training_inputs.check_training_inputs_once
    dump = copy / "dump"
    assert once(entries(copy), shape_file(copy), 32, record_dir=dump) == 6 and len(calls) == 1
    assert (dump / training_inputs.CHECK_RECORD).is_file()
    assert once(entries(copy), shape_file(copy), 32, record_dir=dump) is None and len(calls) == 1
    assert once(entries(copy), shape_file(copy), 32) == 6 and len(calls) == 2  # no record dir
    with pytest.raises(ValueError, match="expected"):  # another width is another check
        once(entries(copy), shape_file(copy), 48, record_dir=dump)
    # the dump rewritten (a truncated file, its list written again): checked, and caught
    scp = dump / "layer_4.scp"
    first = scp.read_text().split()[1]
    np.save(first, np.zeros((1, 32), np.float16))
    scp.write_text(scp.read_text() + "\n")
    with pytest.raises(ValueError, match="frames"):
        once(entries(copy), shape_file(copy), 32, record_dir=dump)
    assert len(calls) == 4
