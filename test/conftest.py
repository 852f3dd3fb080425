"""Shared fixtures: tiny corpora, distillation configs and teacher dumps built on the fly."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

TEACHER = "random:hubert?layers=4&dim=32&seed=0"

# a pronunciation lexicon, CMUdict style: a comment, stress digits, an alternate
# pronunciation, a tab separator
LEXICON = """;;; a comment
THE DH AH0
THE(2) DH IY1
END\tEH1 N D
by B AY1
RIVER R IH1 V ER0
"""


def write_data_dir(root: Path, split: str, num_utts: int, seed: int = 0) -> Path:
    """A Kaldi-style dir of short tones in noise: wav.scp, utt2num_samples (and text)."""
    rng = np.random.default_rng(seed)
    out = root / split
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(num_utts):
        uid = f"spk{i % 2}-{split}{i:03d}"
        n = int(rng.integers(8000, 24000))
        t = np.arange(n) / 16000
        x = 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(n)
        path = out / "wavs" / f"{uid}.wav"
        sf.write(path, x.astype(np.float32), 16000)
        rows.append((uid, str(path.resolve()), n))
    rows.sort()
    (out / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p, _ in rows))
    (out / "utt2num_samples").write_text("".join(f"{u} {n}\n" for u, _, n in rows))
    (out / "text").write_text("".join(f"{u} A TONE\n" for u, _, _ in rows))
    return out


def distill_config(stacking=None, **over) -> dict:
    """A tiny distillation config; ``stacking`` updates its stacking_conf, ``over`` the rest."""
    conf = {
        "teacher_num_layers": 4, "teacher_hidden_size": 32,
        "stacking_conf": {"method": "interleaved", "depths": [1, 2, 4], "targets": [2, 4],
                          "schedule": "eql", "mode": "l2l_proportional"},
        "frontend": "wav2vec_cnn",
        "frontend_conf": {"norm_mode": "group_norm", "conv_mode": "standard", "bias": False,
                          "shapes": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2},
        "preencoder": "linear", "preencoder_conf": {"output_size": 16},
        "encoder": "stacking_transformer",
        "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32,
                         "pos_enc_layer_type": "abs_pos", "dropout_rate": 0.0,
                         "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0},
        "loss": "distill", "loss_conf": {"loss_type": "mse", "intermediate_weight": 0.5},
        "optim": "adamw", "optim_conf": {"lr": 1.0e-3},
        "scheduler": "warmuplineardecaylr", "scheduler_conf": {"warmup_ratio": 0.1},
        "batch_type": "unsorted", "batch_size": 4, "num_iters_per_epoch": 3, "max_epoch": 4,
        "crop_max_samples": 16000, "keep_nbest_models": 1,
        "best_model_criterion": [["valid", "loss", "min"]], "use_matplotlib": False,
        "seed": 0, "num_workers": 0,
    }
    conf["stacking_conf"].update(stacking or {})
    conf.update(over)
    return conf


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """data/{train,dev} and the teacher's dumped states 2 and 4 for both (built once)."""
    from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

    root = tmp_path_factory.mktemp("corpus")
    dirs = {"train": write_data_dir(root / "data", "train", 12), "dev": write_data_dir(root / "data", "dev", 4, seed=1)}
    for split, d in dirs.items():
        dump_teacher_states(d, root / "dump" / split, TEACHER, [2, 4], nj=1)
    return root


CNN_TEACHER = "random:hubert?layers=4&dim=32&conv=16&seed=3"  # its CNN fits the tiny student's


@pytest.fixture(scope="session")
def cnn_dump(tiny_corpus, tmp_path_factory):
    """CNN_TEACHER's states 2 and 4 and its CNN output for tiny_corpus's train and dev."""
    from espnet2_stacking.pipelines.teacher_dump import dump_teacher_states

    root = tmp_path_factory.mktemp("cnn_dump")
    for split in ("train", "dev"):
        dump_teacher_states(tiny_corpus / "data" / split, root / split, CNN_TEACHER, [2, 4],
                            cnn_features=True)
    return root


def write_config(path: Path, **over) -> Path:
    path.write_text(yaml.safe_dump(distill_config(**over)))
    return path


def train_args(root: Path, config: Path, out: Path, dumped: bool = True) -> list:
    args = ["--config", str(config), "--output_dir", str(out), "--ngpu", "0"]
    for tag, split in (("train", "train"), ("valid", "dev")):
        args += [f"--{tag}_data_path_and_name_and_type", f"{root}/data/{split}/wav.scp,speech,sound",
                 f"--{tag}_shape_file", f"{root}/data/{split}/utt2num_samples"]
        if dumped:
            args += [f"--{tag}_dump_dir", f"{root}/dump/{split}"]
    return args


def run_distill_train(args: list):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "espnet2_stacking.bin.distill_train", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


@dataclasses.dataclass
class InProcessRun:
    returncode: int
    stderr: str  # what the run logged and printed to stderr, tracebacks included


def run_distill_train_in_process(args: list) -> InProcessRun:
    """distill_train in this process, reported as a subprocess would be: its exit status and its
    log. A new process spends 10 s importing ESPnet on the CI machine; runs that need their own
    process (killed, distributed, or compared bit for bit with one that is: settings other
    tests leave in this process, such as threads, change the last bits) use run_distill_train."""
    import contextlib
    import io
    import logging
    import traceback

    from espnet2_stacking.bin.distill_train import main

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s (%(module)s) %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    code = 0
    try:
        with contextlib.redirect_stderr(out):
            main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            out.write(str(e.code))
    except Exception:  # a subprocess would print it and exit 1
        code = 1
        out.write(traceback.format_exc())
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return InProcessRun(code, out.getvalue())


@pytest.fixture(scope="session")
def trained_run(tiny_corpus, tmp_path_factory):
    """One staged distillation (depths 1 -> 2 -> 4, dumped targets), shared by tests."""
    root = tmp_path_factory.mktemp("trained")
    out = root / "exp"
    res = run_distill_train_in_process(train_args(tiny_corpus, write_config(root / "c.yaml"), out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out
