"""Pretrain a small HuBERT-style teacher with ESPnet's own SSL task (recipe stage 0).

Sub-steps, each timed (logged, and appended to ``<out_dir>/times.tsv``), each skipped on a
rerun with ``resume=True`` once finished:

1. labels  MFCC + deltas of the training set (or, for HuBERT's next iteration, a hidden
           state of a trained upstream: ``label_upstream``, ``label_layer``), MiniBatchKMeans
           (fixed seed), then one cluster id per CNN frame for the training, validation and
           any extra sets
           (:mod:`espnet2_stacking.pipelines.teacher_labels`): ``labels/{train,valid,<extra>}/`` and
           ``labels/tokens.txt``, ``labels/kmeans.npz``;
2. stats   ESPnet's ``espnet2.bin.ssl_train --collect_stats true`` -> ``stats/`` (shape files);
3. train   ESPnet's ``espnet2.bin.ssl_train`` -> ``train/`` (ESPnet's checkpoints; a rerun
           passes ``--resume true`` and continues from ``train/checkpoint.pth``);
4. export  the valid-loss best model copied to ``model.pth`` with ``config.yaml`` beside it
           (config first, model last, each under a temporary name then renamed), which
           ``load_upstream("<out_dir>/model.pth")`` reads as an ESPnet SSL teacher.

``pretrain.json`` records what the directory was made from (config digest, clusters, data
dirs); a rerun with other settings is refused instead of mixing two runs.

Example::

    model = pretrain_teacher(Path("data/train"), Path("data/dev"),
                             Path("conf/teacher_hubert_demo.yaml"), Path("exp/teacher"), nj=2)
    teacher = load_upstream(str(model))
"""

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from typeguard import typechecked

from espnet2_stacking.data.atomic import atomic_output, atomic_write_text
from espnet2_stacking.data.frame_shards import full_digest
from espnet2_stacking.data.kaldi_dir import read_data_dir
from espnet2_stacking.pipelines.teacher_labels import (
    TOKENS,
    KMeansModel,
    fit_kmeans,
    label_dir_done,
    mfcc_features,
    split_short,
    upstream_features,
    write_label_dir,
    write_token_list,
)

MODEL = "model.pth"
CONFIG = "config.yaml"
BEST = "valid.loss.best.pth"
RECORD = "pretrain.json"
DONE = ".done"

logger = logging.getLogger(__name__)


class PretrainError(RuntimeError):
    """A sub-step that failed or an output dir that does not fit the request."""


@typechecked
def hubert_num_classes(config: Path) -> int:
    """``num_classes`` of the (single) hubert loss in an SSL-task YAML."""
    with config.open(encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    losses = [loss for loss in conf.get("loss", []) if loss["name"] == "hubert"]
    if len(losses) != 1 or "num_classes" not in losses[0].get("conf", {}):
        raise PretrainError(f"{config}: expected one 'hubert' loss with conf.num_classes")
    return int(losses[0]["conf"]["num_classes"])


@typechecked
def _logging_defaults(config: Path) -> List[str]:
    """ESPnet's SSL task logs to tensorboard unless told not to, and tensorboard is not among
    this project's requirements: off, unless the config asks for it."""
    with config.open(encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    return [] if "use_tensorboard" in conf else ["--use_tensorboard", "false"]


class _Timer:
    """Logs a sub-step's wall time and appends it to ``times.tsv``."""

    def __init__(self, out_dir: Path, name: str):
        self.file, self.name = out_dir / "times.tsv", name

    def __enter__(self):
        logger.info(f"pretrain_teacher: {self.name} ...")
        self.start = time.time()
        return self

    def __exit__(self, exc_type, *_):
        secs = time.time() - self.start
        state = "done" if exc_type is None else "failed"
        logger.info(f"pretrain_teacher: {self.name} {state} in {secs:.1f} s")
        with self.file.open("a", encoding="utf-8") as f:
            f.write(f"{self.name}\t{state}\t{secs:.1f}\n")


def _ssl_train(args: List[str], log_file: Path, num_threads: int) -> None:
    """ESPnet's SSL training (what ``python -m espnet2.bin.ssl_train ARGS`` runs), in this
    process: one interpreter start and one ESPnet import serve stats, training and the probe.
    ESPnet's log goes to ``log_file`` alone; torch runs ``num_threads`` intra-op threads (its
    default, one per core, oversubscribes a shared or small machine: 8x slower steps were seen
    on 2 busy cores)."""
    import torch
    from espnet2.tasks.ssl import SSLTask

    logger.info(f"running espnet2.bin.ssl_train {' '.join(args)}  (log: {log_file})")
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"# espnet2.bin.ssl_train {' '.join(args)}\n")
    root = logging.getLogger()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"))
    saved = (root.handlers[:], root.level, torch.get_num_threads())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    torch.set_num_threads(num_threads)
    failure = None
    try:
        SSLTask.main(cmd=args)
    except SystemExit as e:  # ESPnet's parser rejecting an option
        if e.code not in (0, None):
            failure = f"exited with {e.code}"
    except Exception as e:
        logging.exception("ssl_train failed")  # the traceback goes to the log file
        failure = f"failed: {type(e).__name__}: {e}"
    finally:
        root.handlers[:], level, threads = saved
        root.setLevel(level)
        torch.set_num_threads(threads)
        handler.close()
    if failure is not None:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise PretrainError(f"espnet2.bin.ssl_train {failure}; the end of {log_file}:\n"
                            + "\n".join(tail))


def _data_args(labels: Path, stats: Optional[Path]) -> List[str]:
    args = []
    for tag, split in (("train", "train"), ("valid", "valid")):
        d = labels / split
        args += [f"--{tag}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{tag}_data_path_and_name_and_type", f"{d}/text,text,text"]
        if stats is None:  # collect stats: the sample counts are shape enough
            args += [f"--{tag}_shape_file", f"{d}/utt2num_samples"]
        else:
            args += [f"--{tag}_shape_file", f"{stats}/{split}/speech_shape",
                     f"--{tag}_shape_file", f"{stats}/{split}/text_shape"]
    return args


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)  # follows the symlink ESPnet makes for *.best.pth


def _check_record(out_dir: Path, record: dict, resume: bool) -> None:
    path = out_dir / RECORD
    if path.exists():
        if not resume:
            raise PretrainError(
                f"{out_dir} already holds a teacher run: pass --resume to continue it "
                "(finished sub-steps are skipped), or choose another --out_dir"
            )
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(record) | set(old) if old.get(k) != record.get(k))
        if diff:
            raise PretrainError(
                f"{out_dir} was made with other settings ({', '.join(diff)} differ: "
                f"{ {k: old.get(k) for k in diff} } there, { {k: record[k] for k in diff} } "
                "now): use another --out_dir or remove it"
            )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise PretrainError(f"{out_dir} is not empty and holds no {RECORD}: choose another "
                            "--out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


@typechecked
def make_labels(data_dir: Path, valid_dir: Path, labels: Path, num_clusters: int, nj: int = 1,
                seed: int = 0, extra_dirs: Sequence[Path] = (), max_kmeans_frames: int = 200000,
                cluster: Optional[dict] = None, label_upstream: Optional[str] = None,
                label_layer: Optional[int] = None) -> None:
    """Sub-step 1 (see the module docstring); sets already finished are skipped.
    ``label_upstream``: cluster that upstream's state ``label_layer`` (default its middle one)
    instead of MFCCs, HuBERT's next iteration."""
    upstream = []  # loaded on first use, once for every set

    def features(usable):
        if label_upstream is None:
            return mfcc_features(usable, nj=nj, cluster=cluster)
        if not upstream:
            # the loaders import ESPnet and transformers: MFCC labels do not pay for that
            from espnet2_stacking.upstreams.load import load_upstream
            upstream.append(load_upstream(label_upstream))
        return upstream_features(usable, upstream[0], label_layer)
    labels.mkdir(parents=True, exist_ok=True)
    sets = {"train": data_dir, "valid": valid_dir, **{d.name: d for d in extra_dirs}}
    todo = {name: d for name, d in sets.items() if not label_dir_done(labels / name, num_clusters)}
    if not todo and (labels / "kmeans.npz").exists():
        logger.info(f"labels: all sets finished in {labels}, skipped")
        return
    km_file = labels / "kmeans.npz"
    train_feats = None
    if km_file.exists():
        km = KMeansModel.load(km_file)
        if km.num_clusters != num_clusters:
            raise PretrainError(f"{km_file} has {km.num_clusters} clusters, not {num_clusters}")
    else:
        usable, _ = split_short(read_data_dir(data_dir), str(data_dir))
        t = time.time()
        train_feats = features(usable)
        state = "the middle state" if label_layer is None else f"state {label_layer}"
        source = "MFCC" if label_upstream is None else f"{state} of {label_upstream}"
        logger.info(f"labels: {source} of {len(usable)} utterances in {time.time() - t:.1f} s")
        t = time.time()
        km = fit_kmeans(train_feats, num_clusters, seed=seed, max_frames=max_kmeans_frames)
        logger.info(f"labels: k-means in {time.time() - t:.1f} s")
        km.save(km_file)
    write_token_list(labels / TOKENS, num_clusters)
    for name, d in todo.items():
        feats = train_feats if name == "train" else None
        if feats is None and label_upstream is not None:
            feats = features(split_short(read_data_dir(d), str(d))[0])
        summary = write_label_dir(d, labels / name, km, nj=nj, feats=feats, cluster=cluster)
        logger.info(f"labels: {name} ({d}): {summary['utterances']} utterances, "
                    f"{summary['frames']} frames, {summary['skipped_short']} skipped (short)")


@typechecked
def pretrain_teacher(data_dir: Path, valid_dir: Path, config: Path, out_dir: Path,
                     num_clusters: Optional[int] = None, nj: int = 1, resume: bool = False,
                     seed: int = 0, extra_dirs: Sequence[Path] = (),
                     max_epoch: Optional[int] = None, num_iters_per_epoch: Optional[int] = None,
                     max_kmeans_frames: int = 200000, num_threads: int = 1,
                     cluster: Optional[dict] = None, label_upstream: Optional[str] = None,
                     label_layer: Optional[int] = None) -> Path:
    """Run the four sub-steps (module docstring) and return ``<out_dir>/model.pth``.

    Args:
        data_dir, valid_dir: Kaldi-style dirs (wav.scp, utt2num_samples) to train and
            validate on; utterances under 400 samples are skipped, logged and counted.
        config: an ``espnet2.bin.ssl_train`` YAML with one hubert loss.
        num_clusters: k-means clusters; default (and it must equal) the loss's num_classes.
        nj: processes for the MFCC features.
        cluster: a job class of the site's parallel config; a cluster class computes the MFCC
            features on its workers.
        resume: continue a run in ``out_dir`` (without it, a used ``out_dir`` is refused).
        extra_dirs: further sets to label (e.g. data/test, for probing), as labels/<name>/.
        max_epoch, num_iters_per_epoch: override the config's (e.g. for smoke runs).
        num_threads: torch intra-op threads while ESPnet trains.
        label_upstream, label_layer: HuBERT's next iteration: the labels cluster that
            upstream's hidden state ``label_layer`` (default: its middle state) instead of
            MFCCs, e.g. the teacher of the iteration before.
    """
    want = hubert_num_classes(config)
    if num_clusters is not None and num_clusters != want:
        raise PretrainError(f"--num_clusters {num_clusters} differs from the hubert loss's "
                            f"num_classes {want} in {config}")
    names = [d.name for d in extra_dirs]
    if len(set(names)) != len(names) or {"train", "valid"} & set(names):
        raise PretrainError(f"extra dirs need distinct names other than train/valid: {names}")
    record = {
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
        "num_clusters": want, "seed": seed, "data_dir": str(data_dir.resolve()),
        "valid_dir": str(valid_dir.resolve()), "max_epoch": max_epoch,
        "num_iters_per_epoch": num_iters_per_epoch,
    }
    if label_upstream is not None:  # absent for MFCC labels: older records stay valid
        path = Path(label_upstream)
        record.update(label_upstream=label_upstream, label_layer=label_layer,
                      label_upstream_digest=full_digest(path) if path.is_file() else None)
    _check_record(out_dir, record, resume)
    labels, stats, train = out_dir / "labels", out_dir / "stats", out_dir / "train"

    with _Timer(out_dir, "labels"):
        make_labels(data_dir, valid_dir, labels, want, nj=nj, seed=seed, extra_dirs=extra_dirs,
                    max_kmeans_frames=max_kmeans_frames, cluster=cluster,
                    label_upstream=label_upstream, label_layer=label_layer)

    common = ["--config", str(config), "--ngpu", "0", "--seed", str(seed),
              "--token_list", str(labels / TOKENS), *_logging_defaults(config)]
    overrides = []
    if max_epoch is not None:
        overrides += ["--max_epoch", str(max_epoch)]
    if num_iters_per_epoch is not None:
        overrides += ["--num_iters_per_epoch", str(num_iters_per_epoch)]

    with _Timer(out_dir, "stats"):
        if (stats / DONE).exists():
            logger.info(f"stats: finished in {stats}, skipped")
        else:
            stats.mkdir(parents=True, exist_ok=True)
            # Shapes only: with no normalisation to fit, running the CNN over the whole
            # training set (ESPnet's default) would cost minutes and give nothing used.
            _ssl_train([*common, "--collect_stats", "true", "--output_dir", str(stats),
                        "--model_conf", "extract_feats_in_collect_stats=false",
                        *_data_args(labels, None), *overrides], stats / "collect_stats.log", num_threads)
            for split in ("train", "valid"):
                for key in ("speech_shape", "text_shape"):
                    if not (stats / split / key).exists():
                        raise PretrainError(f"collect stats wrote no {stats / split / key}")
            (stats / DONE).touch()

    model = out_dir / MODEL
    with _Timer(out_dir, "train"):
        if model.exists():
            logger.info(f"train: {model} exists, skipped")
        else:
            train.mkdir(parents=True, exist_ok=True)
            _ssl_train([*common, "--output_dir", str(train), "--resume", "true",
                        *_data_args(labels, stats), *overrides], train / "train.log", num_threads)

    with _Timer(out_dir, "export"):
        if not model.exists():
            best = train / BEST
            if not best.exists():
                raise PretrainError(f"training left no {best} (see {train / 'train.log'})")
            _atomic_copy(train / CONFIG, out_dir / CONFIG)
            _atomic_copy(best, model)
    return model
