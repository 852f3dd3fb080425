"""The teacher contract, on tiny random teachers: frames, padding, freezing, dtypes, errors."""

import pytest
import torch

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.upstreams import AbsUpstream, load_upstream, select_states
from espnet2_stacking.upstreams.cnn import check_frame_rule, frame_lengths

WAV2VEC2_CNN = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2


def two_utterances(seed=0):
    """A padded batch of 1 s and 0.7 s (its padding filled with junk), and each alone."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(16000, generator=g), torch.randn(11200, generator=g)
    batch = torch.full((2, 16000), 7.0)
    batch[0], batch[1, :11200] = a, b
    return batch, torch.tensor([16000, 11200]), a[None], b[None]


def test_num_frames_is_what_the_wav2vec2_cnn_gives():
    n = torch.arange(0, 5000)
    assert frame_lengths(WAV2VEC2_CNN, n).tolist() == [num_frames(int(i)) for i in n]
    assert check_frame_rule(WAV2VEC2_CNN, "x") == 320
    with pytest.raises(ValueError, match="half.*not the wav2vec2 rule"):
        check_frame_rule(WAV2VEC2_CNN[:-1], "half")


def test_select_states():
    states = [torch.full((1, 2, 3), float(k)) for k in range(4)]
    assert [int(s[0, 0, 0]) for s in select_states(states, [1, 3])] == [1, 3]
    with pytest.raises(IndexError, match="num_layers >= 5"):
        select_states(states, [5])


class Student(torch.nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)
        self.teacher = teacher


def test_frozen_eval_no_grad_and_out_of_the_students_state_dict():
    teacher = load_upstream("random:hubert?layers=2")
    assert isinstance(teacher, AbsUpstream) and not isinstance(teacher, torch.nn.Module)
    student = Student(teacher)
    student.train()
    teacher.train()
    assert not teacher._module.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert set(student.state_dict()) == {"proj.weight", "proj.bias"}
    assert len(list(student.parameters())) == 2
    wav = torch.randn(1, 4000, requires_grad=True)
    states, frames = teacher.extract_features(wav, torch.tensor([4000]))
    assert not any(s.requires_grad for s in states)
    assert frames.tolist() == [num_frames(4000)] and states[0].shape == (1, num_frames(4000), 32)
    # the states serve as targets of a student's backward (no inference tensors)
    loss = (student.proj(torch.randn(1, frames[0], 32)) - states[2]).abs().mean()
    loss.backward()
    assert student.proj.weight.grad is not None
    # someone reaching into the module cannot leave it training
    teacher._module.train()
    teacher.extract_features(wav.detach(), torch.tensor([4000]))
    assert not teacher._module.training
    assert teacher.to("cpu") is teacher


@pytest.mark.parametrize("spec", ["random:hubert?layers=2", "random:wavlm?layers=2",
                                  "random:hubert?layers=2&pre_ln=1"])
def test_a_padded_utterance_gets_its_states_alone(spec):
    teacher = load_upstream(spec)
    batch, lengths, a, b = two_utterances()
    states, frames = teacher.extract_features(batch, lengths)
    alone_a, _ = teacher.extract_features(a, lengths[:1])
    alone_b, frames_b = teacher.extract_features(b, lengths[1:])
    assert frames.tolist() == [49, 34] and frames_b.tolist() == [34]
    assert len(states) == 3 and all(s.dtype == torch.float32 for s in states)
    for k in range(3):
        torch.testing.assert_close(states[k][0], alone_a[k][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(states[k][1, :34], alone_b[k][0], atol=1e-5, rtol=0)
        assert states[k][1, 34:].abs().max() == 0  # padded frames are zero
        assert states[k][1, :34].abs().mean() > 0.1


def test_num_layers_stops_at_the_deepest_needed_layer():
    teacher = load_upstream("random:wav2vec2?layers=3")
    layers = teacher._module.encoder.transformer.layers
    calls = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, layer in enumerate(layers)]
    batch, lengths, _, _ = two_utterances()
    part, _ = teacher.extract_features(batch, lengths, num_layers=1)
    assert calls == [0] and len(part) == 2
    full, _ = teacher.extract_features(batch, lengths)
    assert calls == [0, 0, 1, 2] and len(full) == 4
    for k in range(2):
        torch.testing.assert_close(part[k], full[k], atol=0, rtol=0)
    only_h0, _ = teacher.extract_features(batch, lengths, num_layers=0)
    assert len(only_h0) == 1
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_computes_in_that_dtype_and_returns_float32(dtype):
    ref = load_upstream("random:hubert?layers=2")
    low = load_upstream("random:hubert?layers=2", dtype=dtype)
    assert {p.dtype for p in low.parameters()} == {getattr(torch, dtype)}
    batch, lengths, _, _ = two_utterances()
    want, _ = ref.extract_features(batch, lengths)
    got, _ = low.extract_features(batch, lengths)
    for w, g in zip(want, got):
        assert g.dtype == torch.float32
        assert (w - g).abs().max() < 0.15 and (w - g).abs().mean() < 0.02


def test_the_callers_autocast_does_not_change_the_teachers_dtype():
    teacher = load_upstream("random:hubert?layers=2")
    batch, lengths, _, _ = two_utterances()
    plain, _ = teacher.extract_features(batch, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp, _ = teacher.extract_features(batch, lengths)
    for a, b in zip(plain, under_amp):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_layer_norm_normalisation_of_returned_states():
    teacher = load_upstream("random:hubert?layers=2&pre_ln=1", normalize="layer_norm")
    batch, lengths, _, _ = two_utterances()
    states, frames = teacher.extract_features(batch, lengths)
    for h in states:
        valid = h[1, : frames[1]]
        torch.testing.assert_close(valid.mean(-1), torch.zeros(34), atol=1e-5, rtol=0)
        torch.testing.assert_close(valid.var(-1, unbiased=False), torch.ones(34), atol=1e-3, rtol=0)
        assert h[1, frames[1]:].abs().max() == 0


def test_bad_inputs_are_named():
    teacher = load_upstream("random:hubert?layers=1")
    wav = torch.randn(2, 4000)
    with pytest.raises(ValueError, match=r"2-D \(batch, samples\) float"):
        teacher.extract_features(torch.randn(4000), torch.tensor([4000]))
    with pytest.raises(ValueError, match="float"):
        teacher.extract_features(torch.ones(1, 4000, dtype=torch.long), torch.tensor([4000]))
    with pytest.raises(ValueError, match="utterance 1 .* 300 samples, shorter than one frame"):
        teacher.extract_features(wav, torch.tensor([4000, 300]))
    with pytest.raises(ValueError, match="utterance 0 .* length 5000 .* only 4000"):
        teacher.extract_features(wav, torch.tensor([5000, 4000]))
    with pytest.raises(ValueError, match="integers"):
        teacher.extract_features(wav, torch.tensor([4000.0, 4000.0]))
    with pytest.raises(ValueError, match=r"\(batch,\) = \(2,\)"):
        teacher.extract_features(wav, torch.tensor([4000]))
    with pytest.raises(ValueError, match=r"num_layers=2 is not in 0\.\.1"):
        teacher.extract_features(wav, torch.tensor([4000, 4000]), num_layers=2)
