"""Evidence that a teacher learned layer-specific structure: layer CKA and linear probes,
for the trained teacher and for a randomly initialised model of the same config.

- Linear CKA (Kornblith et al. 2019) between every pair of hidden states h_0..h_L over all
  valid frames of the probe set: one (L+1, L+1) matrix per model.
- A linear probe per layer: multinomial logistic regression (full-batch L-BFGS from zero,
  L2-regularised, on standardised features) predicting each frame's label (the k-means
  cluster ids of pretrain_teacher), trained on the frames of one half of the utterances and
  scored on the other half (an utterance-level split: no frame of a test utterance is seen).

Example::

    result = probe_teacher(Path("exp/teacher/model.pth"), Path("data/test"),
                           Path("exp/teacher/labels/test/text"), Path("exp/teacher/probe"))
    result["trained_beats_random"]
"""

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_write_text
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.data.utterances import Utterance, batches_by_length, padded_audio
from espnet2_stacking.pipelines.teacher_labels import LabelError, read_labels
from espnet2_stacking.upstreams.abs_upstream import AbsUpstream

MAX_BATCH_SAMPLES = 40 * SAMPLE_RATE
logger = logging.getLogger(__name__)


# ---- the measures -----------------------------------------------------------------------
@typechecked
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of (n, d1) and (n, d2) representations of the same n examples, in [0, 1];
    invariant to orthogonal transforms and isotropic scaling of either."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples: {x.shape[0]} vs {y.shape[0]} rows")
    x = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    y = y.astype(np.float64) - y.mean(0, dtype=np.float64)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


@typechecked
def cka_matrix(states: Sequence[np.ndarray]) -> np.ndarray:
    """(L+1, L+1) linear CKA between every pair of (frames, dim) states."""
    n = len(states)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = linear_cka(states[i], states[j])
    return out


@typechecked
def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, num_classes: int, l2: float = 1e-4,
                   max_iter: int = 100) -> float:
    """Frame accuracy on (x_test, y_test) of a logistic regression fit on (x_train, y_train)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.from_numpy((x_train - mean) / std).double()
    xs = torch.from_numpy((x_test - mean) / std).double()
    yt = torch.from_numpy(y_train).long()
    w = torch.zeros(xt.size(1), num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xs @ w + b).argmax(1).numpy()
    return float((pred == y_test).mean())


@typechecked
def split_utterances(uttids: Sequence[str], seed: int = 0) -> Tuple[List[str], List[str]]:
    """A seeded half/half split of utterance ids (probe training, probe test)."""
    ids = sorted(uttids)
    random.Random(seed).shuffle(ids)
    half = len(ids) // 2
    if half == 0:
        raise ValueError(f"a probe needs at least 2 utterances, got {len(ids)}")
    return sorted(ids[:half]), sorted(ids[half:])


# ---- states of a teacher ----------------------------------------------------------------
@typechecked
def teacher_states(teacher: AbsUpstream, utts: Sequence[Utterance],
                   labels: Dict[str, List[int]]) -> Dict[str, List[np.ndarray]]:
    """{uttid: [h_0..h_L as (frames, dim)]}, each checked to have one frame per label."""
    out: Dict[str, List[np.ndarray]] = {}
    for batch in batches_by_length(utts, MAX_BATCH_SAMPLES):
        padded, lengths = padded_audio(batch, teacher.sample_rate)
        states, frames = teacher.extract_features(padded, lengths)
        for i, u in enumerate(batch):
            t = int(frames[i])
            if t != len(labels[u.utt_id]):
                raise LabelError(
                    f"utterance '{u.utt_id}': the teacher gives {t} frames but its label "
                    f"line has {len(labels[u.utt_id])}"
                )
            out[u.utt_id] = [h[i, :t].numpy() for h in states]
    return out


@typechecked
def random_init_teacher(model_file: Path, seed: int = 0) -> AbsUpstream:
    """A model of ``model_file``'s config.yaml with fresh (seeded) weights, as a teacher."""
    from espnet2.tasks.ssl import SSLTask

    from espnet2_stacking.upstreams.espnet_ssl import ESPnetSSLUpstream

    config_file = model_file.parent / "config.yaml"
    with config_file.open(encoding="utf-8") as f:
        config = yaml.safe_load(f)
    torch.manual_seed(seed)
    model = SSLTask.build_model(argparse.Namespace(**config))
    return ESPnetSSLUpstream(model, source=f"random init of {config_file} (seed {seed})")


@typechecked
def measure(teacher: AbsUpstream, utts: Sequence[Utterance], labels: Dict[str, List[int]],
            split: Tuple[List[str], List[str]], num_classes: int) -> dict:
    """CKA matrix and per-layer probe accuracy of one teacher."""
    states = teacher_states(teacher, utts, labels)
    num_states = len(next(iter(states.values())))
    train_ids, test_ids = split

    def stack(ids, k):
        return np.concatenate([states[u][k] for u in ids])

    y_train = np.concatenate([labels[u] for u in train_ids])
    y_test = np.concatenate([labels[u] for u in test_ids])
    every = sorted(states)
    cka = cka_matrix([stack(every, k) for k in range(num_states)])
    acc = [probe_accuracy(stack(train_ids, k), y_train, stack(test_ids, k), y_test, num_classes)
           for k in range(num_states)]
    return {"cka": cka.tolist(), "probe_accuracy": acc}


# ---- the whole probe --------------------------------------------------------------------
@typechecked
def probe_teacher(teacher_file: Path, data_dir: Path, labels_file: Path, out_dir: Path,
                  seed: int = 0, max_utts: Optional[int] = None) -> dict:
    """Measure the trained teacher and a random init of its config; write
    ``out_dir/probe.json`` and ``out_dir/probe.png``; return the result."""
    from espnet2_stacking.upstreams.load import load_upstream

    labels = read_labels(labels_file)
    utts = [u for u in read_data_dir(data_dir) if u.utt_id in labels]
    skipped = len(read_data_dir(data_dir)) - len(utts)
    if skipped:
        logger.warning(f"{data_dir}: {skipped} utterance(s) have no label line, left out")
    if max_utts is not None:
        utts = utts[:max_utts]
    split = split_utterances([u.utt_id for u in utts], seed=seed)
    num_classes = max(max(v) for v in labels.values() if v) + 1
    y_train = np.concatenate([labels[u] for u in split[0]])
    y_test = np.concatenate([labels[u] for u in split[1]])
    majority = float((y_test == np.bincount(y_train).argmax()).mean())

    trained = measure(load_upstream(str(teacher_file)), utts, labels, split, num_classes)
    rand = measure(random_init_teacher(teacher_file, seed), utts, labels, split, num_classes)
    best_t, best_r = max(trained["probe_accuracy"]), max(rand["probe_accuracy"])
    result = {
        "teacher": str(teacher_file), "data_dir": str(data_dir), "labels": str(labels_file),
        "utterances": {"probe_train": len(split[0]), "probe_test": len(split[1])},
        "frames": {"probe_train": int(len(y_train)), "probe_test": int(len(y_test))},
        "num_classes": num_classes, "majority_class_accuracy": majority,
        "trained": trained, "random": rand,
        "best_layer": {"trained": int(np.argmax(trained["probe_accuracy"])),
                       "random": int(np.argmax(rand["probe_accuracy"]))},
        "best_accuracy": {"trained": best_t, "random": best_r},
        "trained_beats_random": bool(best_t > best_r),
        "margin": best_t - best_r,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "probe.json", json.dumps(result, indent=2) + "\n")
    plot_probe(result, out_dir / "probe.png")
    return result


@typechecked
def format_table(result: dict) -> str:
    """``layer | trained acc | random acc`` rows, the best of each and the verdict."""
    lines = ["layer | trained acc | random acc", "----- | ----------- | ----------"]
    for k, (t, r) in enumerate(zip(result["trained"]["probe_accuracy"],
                                   result["random"]["probe_accuracy"])):
        lines.append(f"h_{k:<3} | {t:11.3f} | {r:10.3f}")
    b = result["best_accuracy"]
    lines.append(f"best  | {b['trained']:11.3f} | {b['random']:10.3f}")
    lines.append(f"majority class: {result['majority_class_accuracy']:.3f}; "
                 f"trained_beats_random: {result['trained_beats_random']} "
                 f"(margin {result['margin']:+.3f})")
    return "\n".join(lines)


@typechecked
def plot_probe(result: dict, png: Path) -> None:
    """CKA heatmaps (trained, random) and probe accuracy per layer, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, name in zip(axes[:2], ("trained", "random")):
        cka = np.array(result[name]["cka"])
        im = ax.imshow(cka, vmin=0, vmax=1, cmap="viridis", origin="lower")
        ax.set_title(f"linear CKA between layers ({name})")
        ax.set_xlabel("hidden state h_k")
        ax.set_ylabel("hidden state h_k")
        ticks = range(len(cka))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        for i in ticks:
            for j in ticks:
                ax.text(j, i, f"{cka[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if cka[i, j] < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[2]
    for name, style in (("trained", "o-"), ("random", "s--")):
        acc = result[name]["probe_accuracy"]
        ax.plot(range(len(acc)), acc, style, label=name)
    ax.axhline(result["majority_class_accuracy"], color="gray", lw=0.8, label="majority class")
    ax.set_title(f"linear probe of {result['num_classes']} k-means labels (held-out utts)")
    ax.set_xlabel("hidden state h_k")
    ax.set_ylabel("frame accuracy")
    ax.legend()
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png)
