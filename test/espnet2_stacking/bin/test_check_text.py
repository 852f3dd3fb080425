import pytest

from espnet2_stacking.bin.check_text import main, oov_counts

TOKENS = "<blank>\n<unk>\nA\nB\nC\n<space>\n<sos/eos>\n"


def write(tmp_path, text):
    (tmp_path / "tokens.txt").write_text(TOKENS)
    (tmp_path / "text").write_text(text)
    return ["--token_list", str(tmp_path / "tokens.txt"), str(tmp_path / "text")]


def test_counts_characters_outside_the_token_list(tmp_path):
    write(tmp_path, "u1 AB CA\nu2 ABÇ 9\n")
    r = oov_counts(tmp_path / "text", set(TOKENS.split()))
    assert r["chars"] == 10 and dict(r["oov"]) == {"Ç": 1, "9": 1} and r["utts_with_oov"] == 1


def test_a_few_are_reported_and_many_fail_naming_the_file(tmp_path, capsys):
    main(write(tmp_path, "u1 AB CA\nu2 ABC\n"))
    assert "0 of 8 characters" in capsys.readouterr().err
    args = write(tmp_path, "u1 AB CA\nu2 XYZ\n")
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 1 and "3 of 8 characters" in err and "'X' x1" in err
    assert f"{tmp_path / 'text'}: more than 1.00 %" in err


def test_an_empty_transcript_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(write(tmp_path, "u1 AB\nu2\n"))
    assert "empty transcript for 1 utterances, e.g. u2" in capsys.readouterr().err


def test_a_transcript_file_that_is_not_text_is_named(tmp_path, capsys):
    args = write(tmp_path, "")
    (tmp_path / "text").write_bytes(b"u1 \xff\xfe\x00\x01\n")
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 1
    assert f"check_text: {tmp_path / 'text'}: line 1: not UTF-8 text" in capsys.readouterr().err


def test_phones_outside_the_list_and_missing_transcripts_are_counted(tmp_path, capsys):
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\nð\nɪ\nd\noʊ\n<sos/eos>\n")
    (tmp_path / "text_phn").write_text("u1 ð ɪ d oʊ\nu2 ð ɑː d\n")
    r = oov_counts(tmp_path / "text_phn", set((tmp_path / "tokens.txt").read_text().split()), "word")
    assert r["chars"] == 7 and dict(r["oov"]) == {"ɑː": 1} and r["utts_with_oov"] == 1
    (tmp_path / "wav.scp").write_text("u1 /a.wav\nu2 /b.wav\nu3 /c.wav\n")
    with pytest.raises(SystemExit):
        main(["--unit", "word", "--utt_list", "wav.scp", "--max_oov_rate", "0.5",
              "--token_list", str(tmp_path / "tokens.txt"), str(tmp_path / "text_phn")])
    err = capsys.readouterr().err
    assert "1 of 7 tokens" in err and "'ɑː' x1" in err
    assert f"no transcript for 1 of the 3 utterances of {tmp_path / 'wav.scp'}, e.g. u3" in err
