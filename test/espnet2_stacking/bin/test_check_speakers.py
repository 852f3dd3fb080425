"""Speaker-ID splits checked before training: every problem named, nothing dropped."""

from pathlib import Path

import pytest

from espnet2_stacking.bin.check_speakers import check_speaker_splits, main


def split(root: Path, name: str, rows) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} /a/{u}.wav\n" for u, _ in rows))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" if s else f"{u}\n" for u, s in rows))
    return d


def test_good_splits_pass_with_a_count(tmp_path, capsys):
    dirs = [split(tmp_path, "tr", [("a1", "a"), ("b1", "b")]), split(tmp_path, "te", [("a2", "a"), ("b2", "b")])]
    main([str(d) for d in dirs])
    assert "2 splits, 2 speakers in" in capsys.readouterr().err


def test_a_speaker_in_one_split_is_named_with_its_file_and_utterances(tmp_path, capsys):
    tr = split(tmp_path, "tr", [("a1", "a"), ("b1", "b"), ("c1", "c")])
    dv = split(tmp_path, "dv", [("a2", "a"), ("b2", "b"), ("d1", "d"), ("d2", "d")])
    te = split(tmp_path, "te", [("a3", "a"), ("b3", "b")])
    with pytest.raises(SystemExit) as e:
        main([str(tr), str(dv), str(te)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    # a dev speaker that train lacks: an error naming the file, the speaker and its utterances
    assert f"error: {dv}/utt2spk: speaker d is not in {tr}" in err and "2 utterance(s), d1, d2" in err
    # a train speaker missing from dev and test: reported, not an error
    assert f"warning: speaker c (1 utterance(s) in {tr}) has none in {dv}, {te}" in err
    assert "speaker a" not in err and "speaker b" not in err


def test_utterances_without_a_speaker_are_counted_and_named(tmp_path):
    tr = split(tmp_path, "tr", [("a1", "a"), ("a2", None)])
    te = split(tmp_path, "te", [("a3", "a")])
    (te / "wav.scp").write_text("a3 /a/a3.wav\na4 /a/a4.wav\n")  # a4: in wav.scp, not in utt2spk
    lines = check_speaker_splits([tr, te])
    assert f"error: {tr}/utt2spk: no speaker for 1 of the 2 utterances of {tr}/wav.scp: a2" in lines
    assert f"error: {te}/utt2spk: no speaker for 1 of the 2 utterances of {te}/wav.scp: a4" in lines
    (tr / "utt2spk").unlink()
    assert any(f"{tr}/utt2spk not found" in x for x in check_speaker_splits([tr, te]))
