#!/usr/bin/env python3
"""Which teacher layer does each student layer resemble? Linear CKA between every student state
and every teacher state, per distilled student, on held-out audio (the paper's analysis:
interleaved stacking should keep a clean diagonal, top and middle stacking blur it).

Example (after bench/stacking_speed.py --name demo_cpu):
    tools/venv/bin/python bench/layer_similarity.py --runs bench/work/demo_cpu/dump_* \
        --teacher egs2/demo/distill1/exp/teacher/model.pth \
        --data_dir egs2/demo/distill1/data/dev --name demo_cpu

Each run is a distill_train output dir (config.yaml and latest.pth; bench dirs holding exp/
are accepted too). Writes bench/results/<name>_similarity.json (matrices, and for each student
layer the teacher layer it is most similar to) and one heatmap PNG per run.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from espnet2_stacking.core.frames import SAMPLE_RATE
from espnet2_stacking.data.atomic import atomic_output, atomic_write_text


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="distill_train output dirs")
    p.add_argument("--teacher", required=True, help="The teacher spec the runs distilled")
    p.add_argument("--data_dir", type=Path, required=True, help="Held-out Kaldi dir (wav.scp, utt2num_samples)")
    p.add_argument("--max_utts", type=int, default=40, help="Utterances to compare on")
    p.add_argument("--name", default="similarity")
    p.add_argument("--out_dir", type=Path, default=Path("bench/results"))
    return p


def run_dir(path: Path) -> Path:
    return path / "exp" if (path / "exp" / "config.yaml").exists() else path


@torch.no_grad()
def states_of(encode, utts, load_audio, batches_by_length):
    """[h_0..h_n] each (all frames of all utts, dim), valid frames only."""
    per_layer = None
    for batch in batches_by_length(utts, 60 * SAMPLE_RATE):
        wavs = [torch.from_numpy(load_audio(u, SAMPLE_RATE)) for u in batch]
        lengths = torch.tensor([len(w) for w in wavs])
        states, frames = encode(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths)
        if per_layer is None:
            per_layer = [[] for _ in states]
        for i in range(len(batch)):
            for layer, h in enumerate(states):
                per_layer[layer].append(h[i, : int(frames[i])].float().numpy())
    return per_layer


def cross_cka(student, teacher, linear_cka) -> np.ndarray:
    out = np.zeros((len(student), len(teacher)))
    for i, s in enumerate(student):
        for j, t in enumerate(teacher):
            out[i, j] = linear_cka(s, t)
    return out


def plot(matrix: np.ndarray, title: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4 + 0.3 * matrix.shape[1], 3 + 0.3 * matrix.shape[0]))
    im = ax.imshow(matrix, origin="lower", vmin=0, vmax=1, cmap="viridis")
    ax.set(xlabel="teacher state", ylabel="student state", title=title)
    fig.colorbar(im, ax=ax, label="linear CKA")
    fig.tight_layout()
    with atomic_output(png) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def main():
    args = get_parser().parse_args()
    from espnet2_stacking.data.kaldi_dir import read_data_dir
    from espnet2_stacking.data.utterances import batches_by_length, load_audio
    from espnet2_stacking.pipelines.export import load_distill_model
    from espnet2_stacking.pipelines.teacher_probe import linear_cka
    from espnet2_stacking.tasks.distill_config import stacking_kwargs
    from espnet2_stacking.upstreams import load_upstream

    utts = read_data_dir(args.data_dir)[: args.max_utts]
    teacher = load_upstream(args.teacher)
    teacher_states = states_of(lambda x, n: teacher.extract_features(x, n), utts, load_audio, batches_by_length)
    results = {"teacher": args.teacher, "data_dir": str(args.data_dir), "utterances": len(utts), "runs": {}}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.runs:
        d = run_dir(path)
        model, conf = load_distill_model(d / "config.yaml", d / "latest.pth")
        student_states = states_of(model.encode, utts, load_audio, batches_by_length)
        # teachers may give one frame more than the student: compare on the shorter
        t_states = []
        for t in teacher_states:
            t_states.append(np.concatenate([x[: len(s)] for x, s in zip(t, student_states[0])]))
        s_states = [np.concatenate([s[: len(x)] for s, x in zip(layer, teacher_states[0])])
                    for layer in student_states]
        matrix = cross_cka(s_states, t_states, linear_cka)
        name = path.name
        method = stacking_kwargs(conf.stacking_conf)["method"]  # the task's default when unset
        results["runs"][name] = {
            "stacking_method": method, "lineage": model.encoder.lineage,
            "cka": np.round(matrix, 4).tolist(),
            "most_similar_teacher_state": [int(j) for j in matrix.argmax(1)],
        }
        plot(matrix, f"{name}: {method}", args.out_dir / f"{args.name}_similarity_{name}.png")
        print(f"{name:<28} student state -> most similar teacher state: "
              f"{results['runs'][name]['most_similar_teacher_state']}", file=sys.stderr)
    out = args.out_dir / f"{args.name}_similarity.json"
    atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
