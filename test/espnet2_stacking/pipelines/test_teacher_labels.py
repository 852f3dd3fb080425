"""MFCC k-means labels: one label per CNN frame for every length, short utterances skipped."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_stacking.core.frames import num_frames
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.pipelines.teacher_labels import (
    FEAT_DIM,
    KMeansModel,
    LabelError,
    fit_kmeans,
    label_dir_done,
    mfcc_features,
    read_labels,
    verify_labels,
    write_label_dir,
    write_token_list,
)

LENGTHS = [1, 399, 400, 401, 719, 720, 721, 1039, 1040, 3333, 8000, 16000, 16321, 23999]


def write_dir(root, lengths, seed=0):
    rng = np.random.default_rng(seed)
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i, n in enumerate(lengths):
        uid = f"u{i:03d}"
        path = root / "wavs" / f"{uid}.wav"
        t = np.arange(n) / 16000
        x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(n)
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        rows.append((uid, path, n))
    (root / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p, _ in rows))
    (root / "utt2num_samples").write_text("".join(f"{u} {n}\n" for u, _, n in rows))
    return root


def cnn_frames(n):
    """Frames of ESPnet's wav2vec CNN frontend (the teacher's) for n samples."""
    from espnet2.asr.frontend.cnn import CNNFrontend

    shapes = [(4, 10, 5)] + [(4, 3, 2)] * 4 + [(4, 2, 2)] * 2
    cnn = CNNFrontend(norm_mode="group_norm", conv_mode="standard", bias=False, shapes=shapes)
    with torch.no_grad():
        feats, lens = cnn(torch.zeros(1, n), torch.tensor([n]))
    return feats.size(1)


def random_km(k=5):
    rng = np.random.default_rng(0)
    return KMeansModel(rng.standard_normal((k, FEAT_DIM)).astype(np.float32),
                       np.zeros(FEAT_DIM, np.float32), np.ones(FEAT_DIM, np.float32), 0)


def test_label_count_equals_cnn_frames_for_many_lengths(tmp_path):
    data = write_dir(tmp_path / "data", LENGTHS)
    summary = write_label_dir(data, tmp_path / "labels", random_km())
    labels = read_labels(tmp_path / "labels" / "text")
    for i, n in enumerate(LENGTHS):
        if n < 400:
            assert f"u{i:03d}" not in labels
            continue
        assert len(labels[f"u{i:03d}"]) == num_frames(n) == cnn_frames(n), n
    # short utterances: left out of every file, counted
    assert summary["skipped_short"] == 2 and summary["skipped_utterances"] == ["u000", "u001"]
    assert len(read_data_dir(tmp_path / "labels")) == len(LENGTHS) - 2
    assert json.loads((tmp_path / "labels" / "summary.json").read_text())["utterances"] == 12
    assert label_dir_done(tmp_path / "labels", 5)
    with pytest.raises(LabelError, match="not 7"):
        label_dir_done(tmp_path / "labels", 7)


def test_batched_features_equal_single_utterance_features(tmp_path):
    data = write_dir(tmp_path / "data", [500, 4000, 16000, 9999])
    utts = read_data_dir(data)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        together = mfcc_features(utts)  # nj=1: in this process, whose thread setting it keeps
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    for u in utts:
        alone = mfcc_features([u])[u.utt_id]
        assert alone.shape == (num_frames(u.num_samples), FEAT_DIM)
        np.testing.assert_allclose(together[u.utt_id], alone, rtol=1e-4, atol=1e-4)


def test_too_short_for_features_is_an_error_naming_it(tmp_path):
    data = write_dir(tmp_path / "data", [399, 800])
    with pytest.raises(LabelError, match="u000.*399 samples"):
        mfcc_features(read_data_dir(data))


def test_kmeans_is_seeded_and_labels_in_range(tmp_path):
    data = write_dir(tmp_path / "data", [8000, 12000, 16000])
    feats = mfcc_features(read_data_dir(data))
    a, b = fit_kmeans(feats, 4, seed=3), fit_kmeans(feats, 4, seed=3)
    np.testing.assert_array_equal(a.centers, b.centers)
    ids = np.concatenate([a.predict(f) for f in feats.values()])
    assert ids.min() >= 0 and ids.max() < 4 and len(set(ids.tolist())) > 1
    a.save(tmp_path / "km.npz")
    np.testing.assert_array_equal(KMeansModel.load(tmp_path / "km.npz").centers, a.centers)


def test_verify_names_the_bad_utterance(tmp_path):
    data = write_dir(tmp_path / "data", [800, 1600, 3200])
    out = tmp_path / "labels"
    write_label_dir(data, out, random_km())
    lines = (out / "text").read_text().splitlines()
    lines[1] += " 0"  # one label too many for u001
    (out / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelError, match="u001.*5 labels.*1600 samples give 4 CNN frames"):
        verify_labels(out, 5)
    (out / "text").write_text("\n".join(lines[:1]) + "\n")
    with pytest.raises(LabelError, match="no labels for utterance 'u001'"):
        verify_labels(out, 5)


def test_token_list(tmp_path):
    write_token_list(tmp_path / "tokens.txt", 3)
    assert (tmp_path / "tokens.txt").read_text() == "0\n1\n2\n<unk>\n"
