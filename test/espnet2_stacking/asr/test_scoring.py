import pytest

from espnet2_stacking.asr.scoring import align_counts, read_text, score, score_decode_dir, tokens


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("ref, hyp, expected", [
    ("A B C D", "A B C D", (4, 0, 0, 0)),
    ("A B C D", "A X C D", (3, 1, 0, 0)),
    ("A B C D", "A C D", (3, 0, 1, 0)),
    ("A B C D", "A B Y C D", (4, 0, 0, 1)),
    ("A B", "", (0, 0, 2, 0)),
    ("", "A", (0, 0, 0, 1)),
    ("A B C", "X Y Z W", (0, 3, 0, 1)),
])
def test_word_alignment_counts(ref, hyp, expected):
    assert align_counts(ref.split(), hyp.split()) == expected


def test_characters_count_single_spaces_between_words():
    assert tokens("AB  C", "char") == ["A", "B", " ", "C"]
    assert tokens(" AB  C ", "word") == ["AB", "C"]


def test_corpus_counts_and_rates():
    ref = {"u1": "THE CAT SAT", "u2": "ON A MAT", "u3": "HI"}
    hyp = {"u1": "THE CAT SAT", "u2": "ON THE MAT MAT", "u3": ""}
    w = score(ref, hyp, "word")
    assert (w.snt, w.wrd, w.corr, w.sub, w.dele, w.ins, w.s_err) == (3, 7, 5, 1, 1, 1, 2)
    assert w.error_rate == pytest.approx(3 / 7)
    p = w.percentages()
    assert p["Err"] == pytest.approx(100 * 3 / 7) and p["S.Err"] == pytest.approx(200 / 3)
    c = score(ref, hyp, "char")
    # u2: "ON A MAT" is a subsequence of "ON THE MAT MAT": 6 insertions; u3: "HI" deleted
    assert (c.wrd, c.sub, c.dele, c.ins, c.s_err) == (11 + 8 + 2, 0, 2, 6, 2)


def test_a_missing_hypothesis_is_an_error_naming_it_unless_counted_as_deletions(caplog):
    ref = {"u1": "A B", "u2": "C D E"}
    with pytest.raises(ValueError, match=r"no hypothesis for 1 utterance\(s\) of ref.txt: u2"):
        score(ref, {"u1": "A B"}, ref_name="ref.txt")
    counted = score(ref, {"u1": "A B"}, missing="deletion")
    assert (counted.missing, counted.dele, counted.wrd, counted.s_err) == (1, 3, 5, 1)
    assert "u2" in caplog.text


def test_a_hypothesis_for_an_unknown_utterance_is_an_error():
    with pytest.raises(ValueError, match="that ref lacks: u9"):
        score({"u1": "A"}, {"u1": "A", "u9": "B"}, ref_name="ref")


def test_kaldi_text_files(tmp_path):
    f = write(tmp_path / "text", ["u1 HELLO  WORLD", "u2", "", "u3 X"])
    assert read_text(f) == {"u1": "HELLO  WORLD", "u2": "", "u3": "X"}
    write(f, ["u1 A", "u1 B"])
    with pytest.raises(ValueError, match=r"text:2: utterance 'u1' is listed twice"):
        read_text(f)


def test_score_decode_dir_reads_asr_inference_layout(tmp_path):
    ref = write(tmp_path / "data/test/text", ["u1 AB C", "u2 D"])
    write(tmp_path / "decode/1best_recog/text", ["u1 AB X", "u2 D"])
    scores = score_decode_dir(ref, tmp_path / "decode")
    assert scores["wer"].err == 1 and scores["wer"].wrd == 3
    assert scores["cer"].err == 1 and scores["cer"].wrd == 5
    with pytest.raises(FileNotFoundError, match="other/1best_recog/text not found"):
        score_decode_dir(ref, tmp_path / "other")
