"""RESULTS.md of the downstream ASR runs, in the shape of ESPnet's egs2 RESULTS.md files.

One summary row per upstream (name, kind, parameters, stacking method, schedule,
distillation wall time, WER/CER per test set), then one section per ASR run with ESPnet's
``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|`` tables for WER and CER.

Where the facts come from:
    upstream spec      ``<asr_dir>/config.yaml`` -> ``frontend_conf.upstream``
    parameters         a student's: its network (CNN, preencoder, layers) as stage 4 counted it
                       (``stacking.json``: ``parameters``); a teacher's: counted on it, loaded as
                       the frontend loads it (an ESPnet SSL model's SSL heads included)
    stacking facts     ``stacking.json`` beside an exported student's model.pth (stage 4):
                       ``stacking_method``, ``stacking_schedule``, ``init`` ("random" for the
                       random-init export) and the last ``stacking_log`` line
                       ``{"summary": {"total_seconds": ...}}``; a teacher has none.
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


@dataclasses.dataclass
class UpstreamInfo:
    name: str  # the ASR run's name: asr_<name>
    kind: str  # student / random student / teacher
    spec: str
    parameters: int
    stacking_method: Optional[str] = None
    stacking_schedule: Optional[str] = None
    distill_seconds: Optional[float] = None


@typechecked
def upstream_spec(asr_dir: Path) -> str:
    """The ``upstream`` of a trained ASR run's stacking_upstream frontend."""
    config_file = asr_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: did ASR training (stage 5) run?")
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
def upstream_info(asr_dir: Path) -> UpstreamInfo:
    """What RESULTS.md says about the upstream of one ASR run."""
    spec = upstream_spec(asr_dir)
    name = asr_dir.name[len("asr_"):] if asr_dir.name.startswith("asr_") else asr_dir.name
    stacking_file = None if spec.startswith("random:") else Path(spec).parent / "stacking.json"
    if stacking_file is None or not stacking_file.is_file():
        from espnet2_stacking.upstreams.load import load_upstream  # imports ESPnet's SSL task: slow

        parameters = sum(p.numel() for p in load_upstream(spec).parameters())
        return UpstreamInfo(name=name, kind="teacher", spec=spec, parameters=parameters)
    stacking = json.loads(stacking_file.read_text())
    parameters = stacking["parameters"]  # the student network alone, without loading it
    if stacking.get("init") == "random":
        # the shape of the distilled student, none of its training
        return UpstreamInfo(name=name, kind="random student", spec=spec, parameters=parameters)
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


@typechecked
def render_results(runs: List[UpstreamInfo],
                   scores: Dict[str, Dict[str, Dict[str, ErrorCounts]]],
                   stage_times: Optional[List[List[str]]] = None) -> str:
    """RESULTS.md text; ``scores[run name][test set]`` = {"wer": ..., "cer": ...};
    ``stage_times``: rows (stage, name, seconds) of the recipe's stage_times.tsv."""
    sets = sorted({s for run in runs for s in scores[run.name]})
    out = ["<!-- Generated by espnet2_stacking.bin.score_asr (recipe stage 7) -->", "# RESULTS",
           "## Environments", *_environment(), "",
           "## Upstreams (frozen; SUPERB-style downstream ASR, CTC, no LM)", "",
           "|upstream|kind|parameters|stacking method|schedule|distillation time (s)|"
           + "".join(f"{s} WER (%)|{s} CER (%)|" for s in sets),
           "|---|---|---|---|---|---|" + "---|---|" * len(sets)]
    for run in runs:
        cells = [run.name, run.kind, f"{run.parameters:,}", _fmt(run.stacking_method),
                 _fmt(run.stacking_schedule), _fmt(run.distill_seconds, "{:.1f}")]
        for s in sets:
            got = scores[run.name].get(s)
            cells += ([f"{100 * got['wer'].error_rate:.1f}", f"{100 * got['cer'].error_rate:.1f}"]
                      if got else ["-", "-"])
        out.append("|" + "|".join(cells) + "|")
    for run in runs:
        out += ["", f"## asr_{run.name}", f"- upstream: `{run.spec}` ({run.kind}, "
                f"{run.parameters:,} parameters)"]
        missing = {s: sc["wer"].missing for s, sc in scores[run.name].items() if sc["wer"].missing}
        if missing:
            out.append("- utterances without a hypothesis, scored as all deletions: "
                       + ", ".join(f"{s}: {n}" for s, n in sorted(missing.items())))
        for metric in ("wer", "cer"):
            out += ["", f"### {metric.upper()}", "", HEADER, "|---|---|---|---|---|---|---|---|---|"]
            out += [_row(s, scores[run.name][s][metric]) for s in sorted(scores[run.name])]
    if stage_times:
        out += ["", "## Recipe stage times (this run's exp/stage_times.tsv; reruns append)", "",
                "|stage|name|seconds|", "|---|---|---|"]
        out += ["|" + "|".join(row) + "|" for row in stage_times]
    return "\n".join(out) + "\n"


@typechecked
def write_results(path: Path, runs: List[UpstreamInfo],
                  scores: Dict[str, Dict[str, Dict[str, ErrorCounts]]],
                  stage_times: Optional[List[List[str]]] = None) -> None:
    """Write RESULTS.md atomically (a reader never sees half a file)."""
    atomic_write_text(path, render_results(runs, scores, stage_times))
