"""The recipe path itself (run.sh -> distill.sh -> Python stages) at smoke size."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[2] / "egs2" / "demo" / "distill1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                       reason="espeak-ng and sox are installed by tools/install.sh"),
]


def run(workdir, *args):
    return subprocess.run(["./run.sh", "--datadir", f"{workdir}/data", "--dumpdir", f"{workdir}/dump",
                           "--expdir", f"{workdir}/exp", *args],
                          cwd=RECIPE, capture_output=True, text=True, env={**os.environ})


def test_the_whole_demo_at_smoke_size(tmp_path):
    """README's demo command with --smoke true: every stage 0-7, from nothing to RESULTS.md."""
    res = run(tmp_path, "--smoke", "true", "--local_data_opts", f"--num_utts 16 --audio_dir {tmp_path}/wavs",
              "--results", f"{tmp_path}/RESULTS.md")
    assert res.returncode == 0, res.stderr[-4000:]
    exp = tmp_path / "exp"
    times = (exp / "stage_times.tsv").read_text().splitlines()
    assert [t.split("\t")[0] for t in times] == [str(n) for n in range(8)]
    # stage 0: an ESPnet SSL teacher, probed against a random init
    assert (exp / "teacher/model.pth").exists() and (exp / "teacher/config.yaml").exists()
    probe = json.loads((exp / "teacher/probe/probe.json").read_text())
    assert "trained_beats_random" in probe and (exp / "teacher/probe/probe.png").exists()
    # stages 2-4: distilled from that teacher, 2 -> 4 -> 6
    log = [json.loads(x) for x in (exp / "distill_interleaved_eql/stacking.jsonl").read_text().splitlines()]
    assert [r["to"] for r in log[:-1]] == [4, 6] and log[-1]["summary"]["final_depth"] == 6
    assert json.loads((tmp_path / "dump/train/meta.json").read_text())["teacher"] == str(exp / "teacher/model.pth")
    assert json.loads((exp / "student_interleaved_eql_random/stacking.json").read_text())["init"] == "random"
    # stages 5-7: one row per upstream
    results = (tmp_path / "RESULTS.md").read_text()
    assert "|student|student|" in results, results[:2000]
    # the random student has the shape but no stacking history
    assert re.search(r"\|student_random\|random student\|[\d,]+\|-\|-\|-\|", results), results[:2000]
    # one shared collect-stats pass; the two ASR runs went side by side (run.sh: --asr_nj 2)
    assert (exp / "asr_stats_char/train/speech_shape").exists()
    for name in ("student", "student_random"):
        assert "The training was finished" in (exp / f"asr_{name}/train.log").read_text()
        assert (exp / f"asr_{name}/decode_test/1best_recog/text").exists()
    assert res.stderr.count("finished ASR training on") == 2  # two jobs (bin/run_jobs' log)


def test_unknown_option_is_refused():
    res = subprocess.run(["./distill.sh", "--no_such_option", "1"], cwd=RECIPE, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown option '--no_such_option'" in res.stderr
