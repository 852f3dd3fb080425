"""The student comparison's bookkeeping: the two bench configs differ only in the student's
layer, the seed summary, and its refusals (the runs themselves are stacking_speed.py's, tested
there)."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import student_arch  # noqa: E402

LAYER_KEYS = {"encoder", "encoder_conf", "preencoder", "preencoder_conf"}


def test_the_two_bench_students_differ_only_in_their_layer():
    espnet, hubert = (yaml.safe_load(p.read_text()) for p in student_arch.STUDENTS.values())
    assert (espnet["encoder"], hubert["encoder"]) == ("stacking_transformer", "hubert")
    assert {k: v for k, v in espnet.items() if k not in LAYER_KEYS} == {
        k: v for k, v in hubert.items() if k not in LAYER_KEYS}
    # same width and feed-forward: the comparison is of the layer's function, not its size
    for key in ("output_size", "attention_heads", "linear_units"):
        assert espnet["encoder_conf"][key] == hubert["encoder_conf"][key]


def test_spread_gives_mean_and_range_over_seeds():
    s = student_arch.spread([0.2, 0.26, 0.23])
    assert s["mean"] == pytest.approx(0.23) and (s["min"], s["max"]) == (0.2, 0.26)
    assert s["range"] == pytest.approx(0.06) and s["values"] == [0.2, 0.26, 0.23]
    assert student_arch.spread([None, 0.5, None]) == {"mean": 0.5, "min": 0.5, "max": 0.5, "range": 0.0,
                                                      "values": [0.5]}
    assert student_arch.spread([None]) is None  # no run had the number


def test_an_unknown_student_and_a_missing_dump_are_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["student_arch.py", "--students", "espnet,wavlm"])
    with pytest.raises(SystemExit, match=r"unknown \['wavlm'\]"):
        student_arch.main()
    monkeypatch.setattr(sys, "argv", ["student_arch.py", "--dump_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=f"{tmp_path}/train/meta.json: no dump there"):
        student_arch.main()
