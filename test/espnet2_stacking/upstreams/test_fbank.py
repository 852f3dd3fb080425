import math

import pytest
import torch

from espnet2_stacking.asr.frontend import StackingUpstreamFrontend
from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.upstreams.fbank import FbankUpstream, parse_fbank_spec
from espnet2_stacking.upstreams.load import load_upstream


def test_spec_parsing_and_refusals():
    assert parse_fbank_spec("fbank") == 80 and parse_fbank_spec("fbank?n_mels=40") == 40
    for bad, match in (("fbank?n_mel=40", "unknown key 'n_mel'"), ("fbank?n_mels=x", "1..201"),
                       ("fbank?n_mels=0", "1..201"), ("fbank?n_mels", "key=value")):
        with pytest.raises(ValueError, match=match):
            load_upstream(bad)
    up = load_upstream("fbank?n_mels=40", dtype="bfloat16")
    assert (up.num_layers, up.hidden_size, up.dtype) == (0, 40, "float32")


def test_frames_follow_the_ssl_grid_and_padding_changes_nothing():
    up = FbankUpstream()
    lengths = torch.tensor([16000, 7000, 400])
    wavs = torch.randn(3, 16000)
    states, frame_lengths = up.extract_features(wavs, lengths)
    assert len(states) == 1 and states[0].shape == (3, num_frames(16000), 80)
    assert frame_lengths.tolist() == [num_frames(n) for n in lengths.tolist()]
    alone, _ = up.extract_features(wavs[1:2, :7000], lengths[1:2])
    torch.testing.assert_close(states[0][1, : frame_lengths[1]], alone[0][0])
    assert states[0][1, frame_lengths[1]:].abs().max() == 0  # padded frames are zero


def test_a_tone_lights_the_mel_bin_of_its_frequency():
    up = FbankUpstream(n_mels=80)
    t = torch.arange(16000) / 16000
    feats = []
    for hz in (300.0, 1000.0, 3000.0):
        states, _ = up.extract_features(torch.sin(2 * math.pi * hz * t)[None], torch.tensor([16000]))
        feats.append(states[0][0].mean(0))
    # HTK mel scale, torchaudio's default: 80 triangles between 0 Hz and 8 kHz
    mel_points = torch.linspace(0, 2595 * math.log10(1 + 8000 / 700), 82)
    hz_centres = 700 * (10 ** (mel_points[1:-1] / 2595) - 1)
    for hz, f in zip((300.0, 1000.0, 3000.0), feats):
        peak = hz_centres[int(f.argmax())]
        assert abs(float(peak) - hz) < 0.1 * hz, (hz, float(peak))


def test_the_asr_frontend_takes_fbank_as_its_upstream():
    frontend = StackingUpstreamFrontend(upstream="fbank", fs="16k")
    assert frontend.output_size() == 80
    feats, lens = frontend(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    assert feats.shape == (2, num_frames(8000), 80) and lens.tolist() == [24, 18]
    assert sum(p.numel() for p in frontend.parameters() if p.requires_grad) == 1  # the weight
