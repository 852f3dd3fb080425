import numpy as np
import pytest
import torch

from espnet2_stacking.student.collate import DistillCollateFn, num_frames, num_samples_for


def _utt(num_samples, dim=3, frame_offset=0, seed=0):
    rng = np.random.default_rng(seed)
    frames = num_frames(num_samples) + frame_offset
    # target frame f holds the value f in every dim, so crops can be traced back
    target = np.repeat(np.arange(frames, dtype=np.float16)[:, None], dim, axis=1)
    return {"speech": rng.standard_normal(num_samples).astype(np.float32), "target_12": target}


def test_frame_rule_matches_the_cnn():
    # wav2vec2 CNN: kernel/stride (10,5),(3,2)x4,(2,2)x2 -> 1 + (N - 400) // 320
    conv = torch.nn.Sequential(
        *[torch.nn.Conv1d(1, 1, k, s) for k, s in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2]
    )
    for n in (400, 401, 719, 720, 16000, 16399):
        assert conv(torch.zeros(1, 1, n)).shape[-1] == num_frames(n)
        assert num_frames(num_samples_for(num_frames(n))) == num_frames(n)
    assert num_frames(399) == 0


def test_random_crop_keeps_audio_and_targets_aligned():
    torch.manual_seed(0)
    data = [("a", _utt(16000, seed=1)), ("b", _utt(8000, seed=2))]
    fn = DistillCollateFn(["target_12"], crop_mode="random", max_samples=num_samples_for(10))
    for _ in range(5):
        ids, batch = fn(data)
        assert ids == ["a", "b"]
        assert batch["target_12_lengths"].tolist() == [10, 10]
        assert batch["speech_lengths"].tolist() == [num_samples_for(10)] * 2
        for i, (_, item) in enumerate(data):
            start = int(batch["target_12"][i, 0, 0])  # frame index of the crop start
            assert batch["target_12"][i, :, 0].tolist() == list(range(start, start + 10))
            expect = item["speech"][320 * start : 320 * start + num_samples_for(10)]
            assert np.array_equal(batch["speech"][i].numpy(), expect)


def test_shortest_crop_has_no_padding_and_one_frame_teacher_difference_is_trimmed():
    data = [("a", _utt(16000)), ("b", _utt(8000, frame_offset=-1)), ("c", _utt(12000, frame_offset=1))]
    ids, batch = DistillCollateFn(["target_12"], crop_mode="shortest")(data)
    shortest = num_frames(8000) - 1
    assert batch["target_12"].shape[:2] == (3, shortest)
    assert batch["target_12_lengths"].tolist() == [shortest] * 3
    assert batch["speech"].shape == (3, num_samples_for(shortest))


def test_none_keeps_whole_utterances_for_validation():
    data = [("a", _utt(16000)), ("b", _utt(8000))]
    _, batch = DistillCollateFn(["target_12"], crop_mode="none")(data)
    assert batch["speech_lengths"].tolist() == [16000, 8000]
    assert batch["target_12_lengths"].tolist() == [num_frames(16000), num_frames(8000)]
    assert batch["target_12"][1, num_frames(8000):].abs().sum() == 0


def test_online_mode_crops_speech_only():
    _, batch = DistillCollateFn([], crop_mode="random", max_samples=4000)([("a", {"speech": np.zeros(16000, np.float32)})])
    assert set(batch) == {"speech", "speech_lengths"}
    assert batch["speech_lengths"].tolist() == [num_samples_for(num_frames(4000))]


@pytest.mark.parametrize(
    "item,match",
    [
        ({"speech": np.zeros(300, np.float32), "target_12": np.zeros((0, 3), np.float16)}, "shorter than one frame"),
        ({"speech": np.zeros((800, 2), np.float32), "target_12": np.zeros((1, 3), np.float16)}, "mono"),
        ({"speech": np.zeros(16000, np.float32), "target_12": np.zeros((20, 3), np.float16)}, "does not belong"),
        ({"speech": np.zeros(16000, np.float32), "target_12": np.zeros(49, np.float16)}, r"\(frames, dim\)"),
        ({"speech": np.zeros(16000, np.float32)}, "dump missing"),
    ],
)
def test_bad_items_name_the_utterance(item, match):
    with pytest.raises((ValueError, KeyError), match=match) as e:
        DistillCollateFn(["target_12"])([("utt_x", item)])
    assert "utt_x" in str(e.value)
