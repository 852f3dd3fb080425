import pickle

import numpy as np
import pytest
import soundfile as sf

from espnet2_stacking.data.audio_check import (
    MISSING,
    MULTI_CHANNEL,
    UNREADABLE,
    WRONG_RATE,
    ZERO_LENGTH,
    AudioError,
    check_audio,
    parallel_imap,
)


def tone(n, channels=1):
    x = 0.1 * np.sin(np.arange(n) * 0.05)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_good_file_returns_its_length(tmp_path, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(5000), 16000)
    assert check_audio(path) == 5000
    assert check_audio(str(path), fs=16000) == 5000


def truncated_flac(p):
    sf.write(p, tone(20000), 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def header_only_wav(p):
    sf.write(p, np.zeros(0), 16000, format="WAV")


@pytest.mark.parametrize(
    "name,make,reason,detail",
    [
        ("missing.flac", lambda p: None, MISSING, "no such file"),
        ("empty.flac", lambda p: p.write_bytes(b""), ZERO_LENGTH, "0 bytes"),
        ("header_only.wav", header_only_wav, ZERO_LENGTH, "no samples"),
        ("garbage.flac", lambda p: p.write_bytes(b"not audio at all" * 20), UNREADABLE,
         "cannot open"),
        ("truncated.flac", truncated_flac, UNREADABLE, "truncated"),
        ("rate.flac", lambda p: sf.write(p, tone(800), 8000), WRONG_RATE, "8000 Hz"),
        ("stereo.wav", lambda p: sf.write(p, tone(800, 2), 16000), MULTI_CHANNEL, "2 channels"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, name, make, reason, detail):
    path = tmp_path / name
    make(path)
    with pytest.raises(AudioError) as info:
        check_audio(path)
    err = info.value
    assert (err.path, err.reason) == (str(path), reason)
    assert detail in err.detail
    assert str(err).startswith(f"{path}: {reason}: ")


def test_audio_error_survives_pickling():  # it crosses process boundaries in parallel jobs
    err = pickle.loads(pickle.dumps(AudioError("/x.flac", WRONG_RATE, "8000 Hz")))
    assert (err.path, err.reason, err.detail) == ("/x.flac", WRONG_RATE, "8000 Hz")


@pytest.mark.parametrize("nj", [1, 2])
def test_parallel_imap_keeps_order(nj):
    assert list(parallel_imap(abs, list(range(-20, 0)), nj, "test")) == list(range(20, 0, -1))
