import pytest
import torch

from espnet2_stacking.teachers import AbsTeacher, load_teacher, num_frames, select_states


def test_frozen_eval_and_out_of_a_students_state_dict():
    teacher = load_teacher("random:hubert?layers=2&dim=32")
    student = torch.nn.Linear(2, 2)
    student.teacher = teacher  # not a Module: not registered
    student.train()
    teacher.train()
    assert all(not m.training for m in teacher._modules())
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert set(student.state_dict()) == {"weight", "bias"}
    assert not isinstance(teacher, torch.nn.Module) and isinstance(teacher, AbsTeacher)
    states, frames = teacher.extract_features(torch.randn(1, 4000), torch.tensor([4000]))
    assert not any(s.requires_grad for s in states)
    assert frames.tolist() == [num_frames(4000)] and states[0].shape == (1, num_frames(4000), 32)


def test_num_layers_stops_early_and_select_states():
    teacher = load_teacher("random:wav2vec2?layers=3&dim=32")
    states, _ = teacher.extract_features(torch.randn(2, 3200), torch.tensor([3200, 3200]), num_layers=1)
    assert len(states) == 2
    full, _ = teacher.extract_features(torch.randn(2, 3200), torch.tensor([3200, 3200]))
    assert [s.shape for s in select_states(full, [0, 3])] == [full[0].shape, full[3].shape]


def test_padded_batches_stay_close_to_single_utterances():
    teacher = load_teacher("random:hubert?layers=2&dim=32&pre_ln=1")
    wav = torch.randn(2, 9600)
    lens = torch.tensor([9600, 6400])
    batch, frames = teacher.extract_features(wav, lens)
    alone, _ = teacher.extract_features(wav[1:, :6400], lens[1:])
    assert frames.tolist() == [num_frames(9600), num_frames(6400)]
    # group-norm CNN sees the padding (as in fairseq/HF): close, not equal
    assert torch.allclose(batch[2][1, : frames[1]], alone[2][0], atol=0.2)


def test_dtype_and_normalize():
    t16 = load_teacher("random:hubert?layers=2&dim=32", dtype="bfloat16", normalize="layer_norm")
    states, _ = t16.extract_features(torch.randn(1, 4000), torch.tensor([4000]))
    assert states[1].dtype == torch.float32  # returned as float32 whatever the compute dtype
    assert torch.allclose(states[2].mean(-1), torch.zeros(1, states[2].size(1)), atol=1e-2)


@pytest.mark.parametrize(
    "spec,error,match",
    [
        ("random:bert", ValueError, "unknown architecture"),
        ("random:hubert?layerz=2", ValueError, "unknown key 'layerz'"),
        ("random:hubert?layers=two", ValueError, "must be an integer"),
        ("/nonexistent/model.pt", FileNotFoundError, "not found"),
    ],
)
def test_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        load_teacher(spec)


def test_unknown_file_format_names_the_file(tmp_path):
    bad = tmp_path / "teacher.bin"
    bad.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="teacher.bin.*unknown format"):
        load_teacher(str(bad))
    pt = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, pt)
    with pytest.raises(ValueError, match="weights.pt.*no 'model'"):
        load_teacher(str(pt))


def test_bad_waveforms():
    teacher = load_teacher("random:hubert?layers=1&dim=32")
    with pytest.raises(ValueError, match="shorter than one teacher frame"):
        teacher.extract_features(torch.randn(2, 4000), torch.tensor([4000, 300]))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        teacher.extract_features(torch.randn(4000), torch.tensor([4000]))
    with pytest.raises(ValueError, match="exceeds"):
        teacher.extract_features(torch.randn(1, 4000), torch.tensor([5000]))
