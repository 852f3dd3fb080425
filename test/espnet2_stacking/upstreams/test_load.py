import pytest
import torch

from espnet2_stacking.upstreams import load_upstream


def test_unknown_formats_name_the_path_and_the_supported_ones(tmp_path):
    weights = tmp_path / "teacher.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"teacher\.bin': unknown format.*config\.json.*\.pt.*\.pth"):
        load_upstream(str(weights))
    with pytest.raises(ValueError, match="directory without config.json"):
        load_upstream(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"nothere\.pt' does not exist.*random:"):
        load_upstream(str(tmp_path / "nothere.pt"))


def test_a_corrupt_pt_file_is_an_error(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"broken\.pt: not a readable torch checkpoint"):
        load_upstream(str(tmp_path / "broken.pt"))


def test_bad_options_fail_before_loading():
    with pytest.raises(ValueError, match="dtype 'float64'"):
        load_upstream("random:hubert", dtype="float64")
    with pytest.raises(ValueError, match="normalize 'batch_norm'"):
        load_upstream("random:hubert", normalize="batch_norm")


def test_device_and_options_are_applied():
    teacher = load_upstream("random:hubert?layers=1", dtype="bfloat16", device="cpu", normalize="layer_norm")
    assert teacher.device == torch.device("cpu")
    assert (teacher.dtype, teacher.normalize) == ("bfloat16", "layer_norm")
