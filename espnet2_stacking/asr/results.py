"""RESULTS.md of the downstream runs (ASR, PR, SID), in the shape of ESPnet's egs2 RESULTS.md.

A summary table (one row per upstream: name, kind, parameters, stacking method, schedule,
distillation wall time, and one column per task and test set: ASR CER, PR PER, SID accuracy);
one table per task (the same upstream facts, the task's metrics, training and decoding
time); then one section per run with ESPnet's ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|``
tables (WER and CER for ASR, PER for PR: the word error rate over phone "words") and an
accuracy table for SID.

Where the facts come from:
    upstream spec      ``<asr_dir>/config.yaml`` -> ``frontend_conf.upstream``
    parameters         a student's: its network (CNN, preencoder, layers) as stage 4 counted it
                       (``stacking.json``: ``parameters``); a teacher's: counted on it, loaded as
                       the frontend loads it (an ESPnet SSL model's SSL heads included)
    stacking facts     ``stacking.json`` beside an exported student's model.pth (stage 4):
                       ``stacking_method``, ``stacking_schedule``, ``init`` ("random" for the
                       random-init export) and the last ``stacking_log`` line
                       ``{"summary": {"total_seconds": ...}}``; a teacher has none.
    training time      ``<run_dir>/train_seconds`` (the recipe's jobs write it: the wall seconds
                       of every run of the training job, resumed runs added)
    decoding time      ``<run_dir>/decode_<set>/decode_seconds`` (the sum of the wall seconds of
                       that set's decoding jobs)
"""

import dataclasses
import datetime
import json
import platform
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from typeguard import typechecked

from espnet2_stacking.asr.scoring import ErrorCounts
from espnet2_stacking.data.atomic import atomic_write_text

HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"


TASKS = ("asr", "pr", "sid")
TASK_TITLES = {
    "asr": "ASR (SUPERB-style: CTC over characters or BPE, no LM)",
    "pr": "PR, phoneme recognition (SUPERB-style: CTC over phones; PER)",
    "sid": "SID, speaker identification (SUPERB-style: mean-pooled linear classifier; accuracy)",
}
FBANK_KIND, RANDOM_KIND = "FBANK baseline", "random student"
BASELINE_KINDS = (FBANK_KIND, RANDOM_KIND)  # the rows every other upstream is set against
SUMMARY_METRIC = {"asr": ("cer", "CER"), "pr": ("per", "PER"), "sid": ("acc", "accuracy")}


@dataclasses.dataclass
class UpstreamInfo:
    name: str  # the run's upstream name: <task>_<name>
    kind: str  # student / random student / teacher
    spec: str
    parameters: int
    stacking_method: Optional[str] = None
    stacking_schedule: Optional[str] = None
    distill_seconds: Optional[float] = None


@dataclasses.dataclass
class DownstreamRun:
    """One trained head: its task, its upstream, its scores per test set ({"wer", "cer"} for
    asr, {"per"} for pr, {"acc"} for sid), and its times (None: not recorded)."""

    task: str
    upstream: UpstreamInfo
    scores: Dict[str, Dict[str, ErrorCounts]]
    train_seconds: Optional[float] = None
    decode_seconds: Dict[str, Optional[float]] = dataclasses.field(default_factory=dict)


@typechecked
def read_seconds(path: Path) -> Optional[float]:
    """A time file the recipe wrote (one number), or None when there is none."""
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: expected a number of seconds, got {text[:40]!r}") from None


@typechecked
def upstream_spec(asr_dir: Path) -> str:
    """The ``upstream`` of a trained run's stacking_upstream frontend."""
    config_file = asr_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: did downstream training (stage 5) run?")
    with config_file.open(encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if config.get("frontend") != "stacking_upstream":
        raise ValueError(f"{config_file}: frontend is '{config.get('frontend')}', "
                         "not stacking_upstream; cannot tell its upstream")
    return config["frontend_conf"]["upstream"]


@typechecked
def distill_seconds(stacking: dict, where: Path) -> Optional[float]:
    """Total distillation wall time from the stacking log's summary line (None: no log)."""
    log = stacking.get("stacking_log")  # optional: an export of a run without a log
    if not log:
        return None
    last = log[-1]
    if "summary" not in last:
        raise ValueError(f"{where}: the stacking log does not end with a summary line "
                         "(did distillation finish?)")
    return float(last["summary"]["total_seconds"])


@typechecked
def upstream_info(asr_dir: Path, parameter_counts: Optional[Dict[str, int]] = None) -> UpstreamInfo:
    """What RESULTS.md says about the upstream of one run (``<task>_<name>``).
    ``parameter_counts``: spec -> parameters of upstreams counted before (filled in here), so
    a teacher shared by several tasks is loaded once."""
    spec = upstream_spec(asr_dir)
    name = asr_dir.name
    for task in TASKS:
        if name.startswith(f"{task}_"):
            name = name[len(task) + 1:]
            break
    is_fbank = spec.split("?")[0] == "fbank"
    stacking_file = None if spec.startswith("random:") or is_fbank else Path(spec).parent / "stacking.json"
    if stacking_file is None or not stacking_file.is_file():
        counts = {} if parameter_counts is None else parameter_counts
        if spec not in counts:
            from espnet2_stacking.upstreams.load import load_upstream  # imports ESPnet's SSL task: slow

            counts[spec] = sum(p.numel() for p in load_upstream(spec).parameters())
        kind = FBANK_KIND if is_fbank else "teacher"
        return UpstreamInfo(name=name, kind=kind, spec=spec, parameters=counts[spec])
    stacking = json.loads(stacking_file.read_text())
    parameters = stacking["parameters"]  # the student network alone, without loading it
    if stacking.get("init") == "random":
        # the shape of the distilled student, none of its training
        return UpstreamInfo(name=name, kind=RANDOM_KIND, spec=spec, parameters=parameters)
    return UpstreamInfo(
        name=name, kind="student", spec=spec, parameters=parameters,
        stacking_method=stacking["stacking_method"],
        stacking_schedule=stacking["stacking_schedule"],
        distill_seconds=distill_seconds(stacking, stacking_file),
    )


def _row(dataset: str, c: ErrorCounts) -> str:
    p = c.percentages()
    cells = [dataset, str(c.snt), str(c.wrd)] + [f"{p[k]:.1f}" for k in
                                                   ("Corr", "Sub", "Del", "Ins", "Err", "S.Err")]
    return "|" + "|".join(cells) + "|"


def _environment() -> List[str]:
    import espnet
    import torch

    version = (Path(__file__).parents[1] / "version.txt").read_text().strip()
    lines = [
        f"- date: `{datetime.datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{platform.python_version()}`",
        f"- espnet version: `espnet {espnet.__version__}`",
        f"- pytorch version: `pytorch {torch.__version__}`",
        f"- espnet2_stacking version: `{version}`",
    ]
    try:  # a source checkout has a commit to cite; an installed package may not
        git = subprocess.run(["git", "log", "-1", "--format=%H%n%cd"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
        if git.returncode == 0 and git.stdout.strip():
            commit, date = git.stdout.strip().splitlines()
            lines += [f"- Git hash: `{commit}`", f"  - Commit date: `{date}`"]
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def _fmt(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _percent(run: DownstreamRun, test_set: str, metric: str) -> Optional[float]:
    """A run's metric on a test set in % (accuracy for "acc", else the error rate); None: not
    scored there."""
    got = run.scores.get(test_set)
    if not got:
        return None
    if metric == "acc":
        c = got["acc"]
        return 100 * c.corr / c.snt if c.snt else None
    return 100 * got[metric].error_rate


def _round2(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def _metric(run: DownstreamRun, test_set: str, metric: str) -> str:
    return _fmt(_percent(run, test_set, metric), "{:.1f}")


def _upstream_cells(u: UpstreamInfo) -> List[str]:
    return [u.name, u.kind, f"{u.parameters:,}", _fmt(u.stacking_method), _fmt(u.stacking_schedule)]


def _sets(runs: List[DownstreamRun]) -> List[str]:
    return sorted({s for run in runs for s in run.scores})


def _against_baselines(task: str, runs: List[DownstreamRun]) -> List[str]:
    """One line per (test set, upstream that is not a baseline): its metric against each
    baseline run of the task (FBANK, random student), in points and which way. Empty when the
    task has no baseline run."""
    metric, label = SUMMARY_METRIC[task]
    higher_is_better = metric == "acc"
    baselines = [r for r in runs if r.upstream.kind in BASELINE_KINDS]
    lines = []
    for s in _sets(runs):
        for run in runs:
            mine = _percent(run, s, metric)
            if run.upstream.kind in BASELINE_KINDS or mine is None:
                continue
            parts = []
            for base in baselines:
                theirs = _percent(base, s, metric)
                if theirs is None:
                    continue
                gain = (mine - theirs) if higher_is_better else (theirs - mine)
                parts.append(f"{abs(gain):.1f} points {'better' if gain > 0 else 'worse'} than "
                             f"{base.upstream.name} ({theirs:.1f})")
            if parts:
                lines.append(f"- {task.upper()} {s}: {run.upstream.name} ({run.upstream.kind}) "
                             f"{label} {mine:.1f} %: " + "; ".join(parts))
    return lines


@typechecked
def render_results(runs: List[DownstreamRun],
                   stage_times: Optional[List[List[str]]] = None) -> str:
    """RESULTS.md text of ``runs`` (any tasks, in ``TASKS`` order in the file; upstreams in
    the order they first appear); ``stage_times``: rows (stage, name, seconds) of the
    recipe's stage_times.tsv."""
    tasks = [t for t in TASKS if any(r.task == t for r in runs)]
    by_task = {t: [r for r in runs if r.task == t] for t in tasks}
    upstreams: Dict[str, UpstreamInfo] = {}
    for run in runs:
        upstreams.setdefault(run.upstream.name, run.upstream)
    out = ["<!-- Generated by espnet2_stacking.bin.score_asr (recipe stage 7) -->", "# RESULTS",
           "## Environments", *_environment(), "",
           "## Summary (frozen upstreams; one SUPERB-style head per task and upstream)", ""]
    columns = [(t, s) for t in tasks for s in _sets(by_task[t])]
    out += ["|upstream|kind|parameters|stacking method|schedule|distillation time (s)|"
            + "".join(f"{t.upper()} {s} {SUMMARY_METRIC[t][1]} (%)|" for t, s in columns),
            "|---|---|---|---|---|---|" + "---|" * len(columns)]
    for name, u in upstreams.items():
        cells = _upstream_cells(u) + [_fmt(u.distill_seconds, "{:.1f}")]
        for t, s in columns:
            run = next((r for r in by_task[t] if r.upstream.name == name), None)
            cells.append(_metric(run, s, SUMMARY_METRIC[t][0]) if run else "-")
        out.append("|" + "|".join(cells) + "|")
    against = [line for t in tasks for line in _against_baselines(t, by_task[t])]
    if against:
        # SUPERB's bar: an upstream earns its place when its heads beat the same heads on
        # log-mel filterbanks (and distillation, when they beat a random student of its shape)
        out += ["", "## Against the baselines (FBANK, random student)", "", *against]
    for t in tasks:
        sets = _sets(by_task[t])
        metrics = {"asr": [("wer", "WER"), ("cer", "CER")], "pr": [("per", "PER")],
                   "sid": [("acc", "accuracy")]}[t]
        out += ["", f"## {TASK_TITLES[t]}", "",
                "|upstream|kind|parameters|stacking method|schedule|"
                + "".join(f"{s} {label} (%)|" for s in sets for _, label in metrics)
                + "training time (s)|" + "".join(f"{s} decoding time (s)|" for s in sets),
                "|---|---|---|---|---|" + "---|" * (len(sets) * (len(metrics) + 1) + 1)]
        for run in by_task[t]:
            cells = _upstream_cells(run.upstream)
            cells += [_metric(run, s, m) for s in sets for m, _ in metrics]
            cells.append(_fmt(run.train_seconds, "{:.1f}"))
            cells += [_fmt(run.decode_seconds.get(s), "{:.1f}") for s in sets]
            out.append("|" + "|".join(cells) + "|")
    for run in runs:
        u = run.upstream
        out += ["", f"## {run.task}_{u.name}", f"- upstream: `{u.spec}` ({u.kind}, "
                f"{u.parameters:,} parameters)"]
        first = {"asr": "wer", "pr": "per", "sid": "acc"}[run.task]
        missing = {s: sc[first].missing for s, sc in run.scores.items() if sc[first].missing}
        if missing:
            out.append("- utterances without a hypothesis, scored as all deletions: "
                       + ", ".join(f"{s}: {n}" for s, n in sorted(missing.items())))
        if run.task == "sid":
            out += ["", "### Accuracy", "", "|dataset|Snt|Corr|Err|Acc|", "|---|---|---|---|---|"]
            for s in sorted(run.scores):
                c = run.scores[s]["acc"]
                out.append(f"|{s}|{c.snt}|{c.corr}|{c.snt - c.corr}|"
                           f"{100 * c.corr / max(c.snt, 1):.1f}|")
            continue
        for metric in ("wer", "cer") if run.task == "asr" else ("per",):
            out += ["", f"### {metric.upper()}", "", HEADER, "|---|---|---|---|---|---|---|---|---|"]
            out += [_row(s, run.scores[s][metric]) for s in sorted(run.scores)]
    if stage_times:
        out += ["", "## Recipe stage times (this run's exp/stage_times.tsv; reruns append)", "",
                "|stage|name|seconds|", "|---|---|---|"]
        out += ["|" + "|".join(row) + "|" for row in stage_times]
    return "\n".join(out) + "\n"


@typechecked
def results_summary(runs: List[DownstreamRun]) -> dict:
    """The numbers of RESULTS.md, machine-readable (benches and scripts read this, not the
    Markdown): one entry per run with its upstream, times and each test set's metrics in %."""
    metrics = {"asr": ("wer", "cer"), "pr": ("per",), "sid": ("acc",)}
    return {"runs": [
        {"task": r.task, "upstream": r.upstream.name, "kind": r.upstream.kind,
         "spec": r.upstream.spec, "parameters": r.upstream.parameters,
         "stacking_method": r.upstream.stacking_method,
         "stacking_schedule": r.upstream.stacking_schedule,
         "distill_seconds": r.upstream.distill_seconds, "train_seconds": r.train_seconds,
         "decode_seconds": r.decode_seconds,
         "scores": {s: {m: _round2(_percent(r, s, m)) for m in metrics[r.task]} for s in sorted(r.scores)}}
        for r in runs]}


@typechecked
def write_results(path: Path, runs: List[DownstreamRun],
                  stage_times: Optional[List[List[str]]] = None) -> None:
    """Write RESULTS.md, and its numbers as <stem>.json beside it, atomically (a reader never
    sees half a file)."""
    atomic_write_text(path.with_suffix(".json"), json.dumps(results_summary(runs), indent=1) + "\n")
    atomic_write_text(path, render_results(runs, stage_times))
