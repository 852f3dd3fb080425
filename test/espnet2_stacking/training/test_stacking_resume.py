"""Resuming a staged distillation from ESPnet's epoch checkpoint, end to end (tiny runs)."""

import json

import pytest
from conftest import run_distill_train_in_process, train_args, write_config

from espnet2_stacking.tasks.register import register
from espnet2_stacking.training import stacking_trainer

register()


def _log(out):
    return [json.loads(x) for x in (out / "stacking.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_right_after_a_growth_due_at_an_epoch_end_logs_each_growth_once(tiny_corpus, tmp_path, monkeypatch):
    """12 updates, 2 a epoch, growths due after updates 4 and 8: both boundaries are epoch ends,
    so each growth happens before the next epoch's first batch. Killed right after the first is
    logged (epoch 3; checkpoint.pth holds epoch 2: depth 1, 4 updates), then resumed."""
    conf = write_config(tmp_path / "c.yaml", num_iters_per_epoch=2, max_epoch=6)
    out = tmp_path / "exp"
    write_lines = stacking_trainer._write_lines

    def killed_after_the_first_growth(path, records):
        write_lines(path, records)
        if records and records[-1].get("to") == 2:
            raise RuntimeError("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(stacking_trainer, "_write_lines", killed_after_the_first_growth)
        res = run_distill_train_in_process(train_args(tiny_corpus, conf, out))
    assert res.returncode != 0 and "simulated kill" in res.stderr, res.stderr[-3000:]
    assert [(r["update"], r["epoch"], r["to"]) for r in _log(out)] == [(4, 3, 2)]
    assert (out / "2epoch.pth").exists() and not (out / "3epoch.pth").exists()

    res = run_distill_train_in_process(train_args(tiny_corpus, conf, out) + ["--resume", "true"])
    assert res.returncode == 0, res.stderr[-3000:]
    log = _log(out)
    assert [(r["update"], r["epoch"], r["from"], r["to"]) for r in log[:-1]] == [(4, 3, 1, 2), (8, 5, 2, 4)]
    summary = log[-1]["summary"]
    assert summary["stage_depths"] == [1, 2, 4] and summary["updates"] == 12
    assert len(summary["stage_seconds"]) == 3 and min(summary["stage_seconds"]) >= 0
    assert abs(sum(summary["stage_seconds"]) - summary["total_seconds"]) < 0.01


@pytest.mark.slow
def test_resuming_with_another_stacking_conf_fails_before_the_first_update(tiny_corpus, tmp_path):
    """Grown 2 -> 3 layers by interleaving anchored last (lineage [0, 1, 1]), resumed with the
    anchor first (lineage [0, 0, 1]): the states would go to the wrong layers."""
    out = tmp_path / "exp"
    started = write_config(tmp_path / "a.yaml", stacking={"depths": [2, 3]}, num_iters_per_epoch=2, max_epoch=2)
    res = run_distill_train_in_process(train_args(tiny_corpus, started, out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [(r["update"], r["to"]) for r in _log(out)[:-1]] == [(2, 3)]
    resumed = write_config(tmp_path / "b.yaml", stacking={"depths": [2, 3], "anchor": "first"},
                           num_iters_per_epoch=2, max_epoch=3)
    res = run_distill_train_in_process(train_args(tiny_corpus, resumed, out) + ["--resume", "true"])
    assert res.returncode != 0
    assert "lineage [0, 1, 1]" in res.stderr and "lineage [0, 0, 1]" in res.stderr, res.stderr[-3000:]
    assert "resumed with a different stacking_conf (method, anchor, depths)" in res.stderr
    assert not (out / "3epoch.pth").exists()
