"""downstream_methods.py's table from the runs it reads (stacking_speed.py's JSON, the recipe's
RESULTS.json); the runs themselves are stacking_speed.py's and the recipe's, tested there."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import downstream_methods  # noqa: E402


def speed(seconds: dict, loss: float) -> dict:
    none = seconds["none"]
    return {"runs": {f"dump/{m}": {"train_seconds": s, "speedup": none / s, "valid_loss": loss}
                     for m, s in seconds.items()}}


def results(per: dict, acc: dict) -> dict:
    return {"runs": [{"task": "pr", "upstream": u, "scores": {"test": {"per": v}}} for u, v in per.items()]
            + [{"task": "sid", "upstream": u, "scores": {"sid_test": {"acc": v}}} for u, v in acc.items()]}


def test_the_table_gives_each_method_its_mean_and_range_over_seeds():
    speeds = {0: speed({"none": 100.0, "interleaved_eql": 50.0}, 0.2),
              1: speed({"none": 120.0, "interleaved_eql": 80.0}, 0.3)}
    res = results({"none_seed0": 40.0, "none_seed1": 44.0, "interleaved_eql_seed0": 41.0,
                   "interleaved_eql_seed1": 47.0, "fbank": 60.0},
                  {"none_seed0": 90.0, "none_seed1": 80.0, "interleaved_eql_seed0": 85.0,
                   "interleaved_eql_seed1": 85.0, "fbank": 30.0})
    table = downstream_methods.comparison(speeds, res, ["none", "interleaved_eql"], [0, 1], ["pr", "sid"])
    eql = table["interleaved_eql"]
    assert eql["distill_seconds"] == {"mean": 65.0, "min": 50.0, "max": 80.0, "range": 30.0,
                                      "values": [50.0, 80.0]}
    assert eql["speedup"]["values"] == [2.0, 1.5] and eql["speedup"]["mean"] == pytest.approx(1.75)
    assert eql["pr"]["mean"] == 44.0 and (eql["pr"]["min"], eql["pr"]["max"]) == (41.0, 47.0)
    assert table["none"]["sid"]["mean"] == 85.0 and table["none"]["speedup"]["mean"] == 1.0
    assert table["fbank"] == {"pr": {"mean": 60.0, "min": 60.0, "max": 60.0, "range": 0.0, "values": [60.0]},
                              "sid": {"mean": 30.0, "min": 30.0, "max": 30.0, "range": 0.0, "values": [30.0]}}
    text = downstream_methods.render(table, ["pr", "sid"])
    assert "| interleaved_eql | 65.00 [50.00, 80.00] | 1.75 [1.50, 2.00] | 0.25 [0.20, 0.30] | 44.00 [41.00, 47.00] | 85.00 [85.00, 85.00] |" in text
    assert "| fbank | - | - | - | 60.00 [60.00, 60.00] | 30.00 [30.00, 30.00] |" in text


def test_a_run_missing_from_the_results_is_named():
    res = results({"none_seed0": 40.0}, {})
    with pytest.raises(KeyError, match="no pr run on upstream 'interleaved_eql_seed0'"):
        downstream_methods.comparison({0: speed({"none": 1.0, "interleaved_eql": 1.0}, 0.1)}, res,
                                      ["none", "interleaved_eql"], [0], ["pr"])


def test_unknown_methods_and_tasks_are_refused(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["downstream_methods.py", "--methods", "none,top", "--tasks", "pr,er"])
    with pytest.raises(SystemExit, match=r"unknown \['top', 'er'\]"):
        downstream_methods.main()
    monkeypatch.setattr(sys, "argv", ["downstream_methods.py", "--methods", "interleaved_eql"])
    with pytest.raises(SystemExit, match="must include none"):
        downstream_methods.main()


def test_another_teachers_dump_without_its_meta_is_refused(monkeypatch, tmp_path):
    # before any work: not silently replaced by the bench's own teacher
    monkeypatch.setattr(sys, "argv", ["downstream_methods.py", "--dump_dir", str(tmp_path / "dump")])
    with pytest.raises(SystemExit, match=r"--dump_dir .*dump: no train/meta.json"):
        downstream_methods.main()


def test_the_shell_entry_passes_its_options_on():
    import subprocess

    sh = Path(__file__).parents[2] / "bench" / "downstream_methods.sh"
    done = subprocess.run([str(sh), "--methods", "none,top"], capture_output=True, text=True)
    assert done.returncode != 0 and "unknown ['top']" in done.stderr, done.stderr
