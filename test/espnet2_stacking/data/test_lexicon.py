"""Reading a pronunciation lexicon and turning word transcripts into phones."""

from pathlib import Path

import pytest
from conftest import LEXICON

from espnet2_stacking.data.kaldi_dir import DataPrepError
from espnet2_stacking.data.lexicon import phone_texts, read_lexicon


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_lexicon_reading(tmp_path):
    lex, alternates = read_lexicon(write(tmp_path / "lexicon.txt", LEXICON))
    assert lex["THE"] == ["DH", "AH0"] and lex["BY"] == ["B", "AY1"] and alternates == 1


def test_a_lexicon_entry_without_phones_is_named(tmp_path):
    lex = write(tmp_path / "lexicon.txt", "THE DH AH0\nEND\n")
    with pytest.raises(DataPrepError, match=r"lexicon.txt:2: word 'END' has no phones"):
        read_lexicon(lex)


def test_phones_per_utterance_and_oov_words_in_order():
    lex = {"THE": ["DH", "AH"], "END": ["EH", "N", "D"]}
    phones, oov = phone_texts({"u1": "the end", "u2": "THE ABBEY END ABBEY", "u3": ""}, lex)
    assert phones == {"u1": "DH AH EH N D"}
    assert oov == {"u2": ["ABBEY", "ABBEY"], "u3": ["<empty transcript>"]}
