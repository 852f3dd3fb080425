"""Frame geometry: the wav2vec 2.0 CNN's 400-sample window and 320-sample hop at 16 kHz."""

import pytest

from espnet2_stacking.core.frames import HOP, SAMPLE_RATE, WINDOW, num_frames, num_samples_for


@pytest.mark.parametrize("n,frames", [(0, 0), (399, 0), (400, 1), (719, 1), (720, 2), (11200, 34), (16000, 49)])
def test_num_frames_table(n, frames):
    assert num_frames(n) == frames


def test_num_samples_for_is_the_least_preimage():
    for f in range(1, 300):
        assert num_frames(num_samples_for(f)) == f
        assert num_frames(num_samples_for(f) - 1) == f - 1


def test_the_constants():
    assert (SAMPLE_RATE, WINDOW, HOP) == (16000, 400, 320)
    assert SAMPLE_RATE // HOP == 50  # frames a second
