import json
import shutil
import subprocess
import sys

import pytest

from espnet2_stacking.bin.prepare_demo_corpus import get_parser, main

CMD = [sys.executable, "-m", "espnet2_stacking.bin.prepare_demo_corpus"]


def test_help_lists_the_recipe_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--out_dir", "--audio_dir", "--train_hours", "--dev_minutes", "--test_minutes",
                "--seed", "--nj", "--num_utts", "--on_bad_utt", "--accents", "--variants"):
        assert opt in out


def test_recipe_command_line_parses():
    args = get_parser().parse_args(
        "--out_dir data --audio_dir downloads/demo_wavs --train_hours 1.0 --dev_minutes 5 "
        "--test_minutes 5 --seed 0 --nj 2 --variants m1,f2".split())
    assert (args.out_dir, args.audio_dir, args.train_hours, args.dev_minutes) == (
        "data", "downloads/demo_wavs", 1.0, 5.0)
    assert (args.seed, args.nj, args.num_utts, args.variants) == (0, 2, None, ["m1", "f2"])


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are needed to synthesise")
def test_module_run_writes_three_splits_and_a_table(tmp_path):
    res = subprocess.run(CMD + ["--out_dir", str(tmp_path / "data"), "--audio_dir",
                                str(tmp_path / "wavs"), "--num_utts", "2", "--accents",
                                "en-us,en-gb-scotland", "--variants", "m3,f1", "--dev_voices",
                                "1", "--test_voices", "1", "--nj", "2"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    table = res.stdout.splitlines()
    assert table[0].split() == ["data", "dir", "utterances", "hours", "voices", "skipped"]
    for row, split in zip(table[1:], ("train", "dev", "test")):
        summary = json.loads((tmp_path / "data" / split / "summary.json").read_text())
        cells = row.split()
        assert cells[0] == f"{tmp_path / 'data'}/{split}"
        assert cells[1:] == ["2", f"{summary['hours']:.3f}", str(len(summary["voices"])), "0"]
        assert len((tmp_path / "data" / split / "wav.scp").read_text().splitlines()) == 2
    assert len(list((tmp_path / "wavs").rglob("*.wav"))) == 6


def test_bad_option_exits_with_a_message(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--out_dir", str(tmp_path), "--num_utts", "0"])
    assert e.value.code == "prepare_demo_corpus: error: num_utts must be positive, got 0"
