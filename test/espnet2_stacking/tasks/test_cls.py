"""Speaker ID through ESPnet's classification task with the plugin's frontend, end to end."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_stacking.asr.scoring import score_classification_dir
from espnet2_stacking.bin import cls_inference, cls_train

CONFIG = Path(__file__).parents[3] / "egs2" / "demo" / "distill1" / "conf" / "sid_demo.yaml"
SPEAKERS = {"a": 300.0, "b": 1200.0, "c": 3000.0}  # each "voice" a tone: separable by fbank


def write_split(root: Path, name: str, per_speaker: int, rng) -> Path:
    d = root / name
    (d / "wav").mkdir(parents=True)
    wavs, labels = [], []
    for spk, hz in SPEAKERS.items():
        for i in range(per_speaker):
            t = np.arange(6400 + 800 * i) / 16000
            x = 0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * rng.standard_normal(len(t))
            path = d / "wav" / f"{spk}{i}.wav"
            sf.write(path, x, 16000)
            wavs.append(f"{spk}-{name}-{i} {path}\n")
            labels.append(f"{spk}-{name}-{i} {spk}\n")
    (d / "wav.scp").write_text("".join(sorted(wavs)))
    (d / "utt2spk").write_text("".join(sorted(labels)))
    return d


@pytest.mark.slow
def test_sid_trains_decodes_and_scores_on_fbank(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    rng = np.random.default_rng(0)
    tr, dv = write_split(tmp_path, "tr", 6, rng), write_split(tmp_path, "dv", 2, rng)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{s}\n" for s in SPEAKERS) + "<unk>\n")  # <unk> last: ESPnet's CLS
    common = ["--config", str(CONFIG), "--frontend_conf", "upstream=fbank?n_mels=40",
              "--token_list", str(tokens), "--max_epoch", "4", "--num_iters_per_epoch", "5",
              "--batch_size", "6", "--optim_conf", "lr=0.01"]
    for tag, d in (("train", tr), ("valid", dv)):
        common += [f"--{tag}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                   f"--{tag}_data_path_and_name_and_type", f"{d}/utt2spk,label,text"]
    stats = tmp_path / "stats"
    cls_train.main(common + ["--collect_stats", "true", "--output_dir", str(stats),
                             "--train_shape_file", str(tr / "wav.scp"),
                             "--valid_shape_file", str(dv / "wav.scp")])
    exp = tmp_path / "exp"
    cls_train.main(common + ["--output_dir", str(exp),
                             "--train_shape_file", str(stats / "train" / "speech_shape"),
                             "--valid_shape_file", str(stats / "valid" / "speech_shape")])
    config = (exp / "config.yaml").read_text()
    assert "input_size: 40" in config and "upstream: fbank?n_mels=40" in config
    cls_inference.main(["--classification_train_config", str(exp / "config.yaml"),
                        "--classification_model_file", str(exp / "valid.acc.best.pth"),
                        "--data_path_and_name_and_type", f"{dv}/wav.scp,speech,sound",
                        "--output_dir", str(tmp_path / "dec")])
    counts = score_classification_dir(dv / "utt2spk", tmp_path / "dec")
    assert counts.snt == 6 and counts.missing == 0
    assert counts.corr >= 5, counts  # three tones: chance is 2 of 6


def test_classification_scoring_counts_and_refusals(tmp_path):
    ref = tmp_path / "utt2spk"
    ref.write_text("u1 a\nu2 b\nu3 c\n")
    (tmp_path / "dec" / "prediction").mkdir(parents=True)
    hyp = tmp_path / "dec" / "prediction" / "text"
    hyp.write_text("u1 a\nu2 c\nu3\n")  # u3: an utterance too short to classify
    c = score_classification_dir(ref, tmp_path / "dec")
    assert (c.snt, c.corr, c.sub, c.dele, c.ins) == (3, 1, 1, 1, 0)
    hyp.write_text("u1 a\nu2 b\n")
    with pytest.raises(ValueError, match="no hypothesis for 1 utterance.*u3"):
        score_classification_dir(ref, tmp_path / "dec")
    hyp.write_text("u1 a b\nu2 b\nu3 c\n")
    with pytest.raises(ValueError, match="more than one label: u1"):
        score_classification_dir(ref, tmp_path / "dec")
    with pytest.raises(FileNotFoundError, match="stage 6"):
        score_classification_dir(ref, tmp_path / "nowhere")
