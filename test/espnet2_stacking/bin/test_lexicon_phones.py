"""The lexicon step of LibriSpeech phoneme recognition: text -> text_phn, OOV words reported."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LEXICON

from espnet2_stacking.bin.lexicon_phones import main

LIBRISPEECH = Path(__file__).parents[3] / "egs2" / "librispeech" / "distill1"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_phones_written_for_every_dir(tmp_path, capsys):
    lex = write(tmp_path / "lexicon.txt", LEXICON)
    write(tmp_path / "tr/text", "u2 THE END\nu1 BY THE RIVER\n")
    write(tmp_path / "te/text", "v1 the end\n")
    main(["--lexicon", str(lex), "--strip_stress", "true", str(tmp_path / "tr"), str(tmp_path / "te")])
    assert (tmp_path / "tr/text_phn").read_text() == "u1 B AY DH AH R IH V ER\nu2 DH AH EH N D\n"
    assert (tmp_path / "te/text_phn").read_text() == "v1 DH AH EH N D\n"
    assert "4 words, 11 phones (1 alternate pronunciations not used)" in capsys.readouterr().err


def test_oov_words_are_reported_per_utterance_and_nothing_is_written(tmp_path, capsys):
    lex = write(tmp_path / "lexicon.txt", LEXICON)
    write(tmp_path / "tr/text", "u1 THE END\n")
    write(tmp_path / "te/text", "v1 THE NORTHANGER END\nv2 BY THE RIVER\nv3 ABBEY ABBEY\nv4\n")
    with pytest.raises(SystemExit, match="no text_phn written"):
        main(["--lexicon", str(lex), str(tmp_path / "tr"), str(tmp_path / "te")])
    err = capsys.readouterr().err
    assert f"{tmp_path}/te/text: 3 utterance(s) have words {lex} lacks" in err
    assert "ABBEY x2" in err and "e.g. v1, v3, v4" in err
    # every such utterance listed with its missing words; no dir got a partial text_phn
    assert (tmp_path / "te/text_phn.oov").read_text() == (
        "v1 NORTHANGER\nv3 ABBEY ABBEY\nv4 <empty transcript>\n")
    assert not (tmp_path / "tr/text_phn").exists() and not (tmp_path / "te/text_phn").exists()
    assert not (tmp_path / "tr/text_phn.oov").exists()


@pytest.mark.slow
def test_librispeech_data_prep_writes_phones_with_a_lexicon(tmp_path):
    """local/data.sh --lexicon: LibriSpeech's dirs, then text_phn in each."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from test_librispeech import make_tree

    tree = make_tree(tmp_path / "LibriSpeech")
    words = {w for s in ("dev-clean", "test-clean") for p in tree.joinpath(s).rglob("*.trans.txt")
             for line in p.read_text().splitlines() for w in line.split()[1:]}
    lex = write(tmp_path / "lexicon.txt", "".join(f"{w} {' '.join(w.replace(chr(39), ''))}\n" for w in sorted(words)))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["local/data.sh", "--datadir", str(tmp_path / "data"), "--nj", "1", "--librispeech_dir", str(tree),
           "--train_subsets", "dev-clean", "--train_set", "tr", "--valid_subset", "dev-clean",
           "--test_subsets", "test-clean", "--lexicon", str(lex)]
    res = subprocess.run(cmd, cwd=LIBRISPEECH, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "data/test_clean/text_phn").read_text() == (
        "61-70968-0000 H E B E G A N A C O N F U S E D C O M P L A I N T\n")
    assert len((tmp_path / "data/tr/text_phn").read_text().splitlines()) == 5
    assert "wrote text_phn in 3 dir(s)" in res.stderr
