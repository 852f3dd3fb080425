import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from espnet2_stacking.bin.prepare_librispeech import get_parser, main

CMD = [sys.executable, "-m", "espnet2_stacking.bin.prepare_librispeech"]


def make_tree(root, rate_of_last=16000):
    """dev-clean with speakers 84 (chapter 121123, 2 utts) and 174 (chapter 50561, 1 utt)."""
    utts = [("84", "121123", 0, 1600), ("84", "121123", 1, 3200), ("174", "50561", 0, 2400)]
    for k, (spk, ch, i, n) in enumerate(utts):
        d = root / "dev-clean" / spk / ch
        d.mkdir(parents=True, exist_ok=True)
        fs = rate_of_last if k == len(utts) - 1 else 16000
        sf.write(d / f"{spk}-{ch}-{i:04d}.flac", np.zeros(n * fs // 16000), fs)
        with open(d / f"{spk}-{ch}.trans.txt", "a") as f:
            f.write(f"{spk}-{ch}-{i:04d} WORDS NUMBER {k}\n")
    return root


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--librispeech_dir", "--sets", "--out_dir", "--nj", "--on_bad_utt"):
        assert opt in out


def test_parser_reads_comma_separated_sets():
    args = get_parser().parse_args(["--librispeech_dir", "L", "--out_dir", "o", "--sets",
                                    "train-clean-100,train-clean-360,train-other-500"])
    assert args.sets == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert (args.nj, args.on_bad_utt) == (1, "error")


def test_module_run_writes_the_dir(tmp_path):
    root = make_tree(tmp_path / "LibriSpeech")
    out = tmp_path / "data" / "dev_clean"
    res = subprocess.run(CMD + ["--librispeech_dir", str(root), "--sets", "dev-clean",
                                "--out_dir", str(out), "--nj", "2"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "text").read_text() == ("174-50561-0000 WORDS NUMBER 2\n"
                                          "84-121123-0000 WORDS NUMBER 0\n"
                                          "84-121123-0001 WORDS NUMBER 1\n")
    assert (out / "spk2utt").read_text() == "174 174-50561-0000\n84 84-121123-0000 84-121123-0001\n"
    assert (out / "utt2num_samples").read_text() == ("174-50561-0000 2400\n84-121123-0000 1600\n"
                                                     "84-121123-0001 3200\n")
    table = res.stdout.splitlines()
    assert table[0].split() == ["data", "dir", "utterances", "hours", "speakers", "skipped"]
    assert table[1].split() == [str(out), "3", "0.000", "2", "0"]


def test_bad_utterance_error_exits_1_naming_it_and_skip_counts_it(tmp_path, capsys):
    root = make_tree(tmp_path / "LibriSpeech", rate_of_last=8000)
    bad = root / "dev-clean" / "174" / "50561" / "174-50561-0000.flac"
    with pytest.raises(SystemExit) as e:
        main(["--librispeech_dir", str(root), "--sets", "dev-clean", "--out_dir",
              str(tmp_path / "d")])
    assert e.value.code == (f"prepare_librispeech: error: {bad}: utterance 174-50561-0000: "
                            "wrong sample rate: 8000 Hz, expected 16000 Hz (pass --on_bad_utt "
                            "skip to leave such utterances out)")
    main(["--librispeech_dir", str(root), "--sets", "dev-clean", "--out_dir",
          str(tmp_path / "d"), "--on_bad_utt", "skip"])
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split()[1:4] == ["2", "0.000", "1"]
    assert row.endswith("1 (wrong sample rate: 1)")
