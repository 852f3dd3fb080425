import numpy as np
import pytest
import soundfile as sf

import espnet2_stacking.data.kaldi_dir as kaldi_dir
from espnet2_stacking.data.kaldi_dir import (
    KALDI_FILES,
    BadUtterance,
    BadUttLog,
    DataPrepError,
    Utterance,
    format_summaries,
    read_kaldi_dir,
    read_scp,
    summarize,
    validate_kaldi_dir,
    write_kaldi_dir,
)

# Speakers "19" and "198": "19-..." sorts before "198-..." ('-' < '8'), as "19" < "198".
UTTS = [
    Utterance("198-2-0001", "/a/198-2-0001.flac", 3200, speaker="198", text="SECOND  ONE"),
    Utterance("19-1-0000", "/a/19-1-0000.flac", 1600, speaker="19", text="HELLO THERE"),
    Utterance("19-1-0001", "/a/19-1-0001.flac", 4800, speaker="19", text="IT'S ME"),
]


def write_files(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


GOOD = {
    "wav.scp": "19-1-0000 /a/19-1-0000.flac\n19-1-0001 /a/19-1-0001.flac\n"
               "198-2-0001 /a/198-2-0001.flac\n",
    "text": "19-1-0000 HELLO THERE\n19-1-0001 IT'S ME\n198-2-0001 SECOND ONE\n",
    "utt2spk": "19-1-0000 19\n19-1-0001 19\n198-2-0001 198\n",
    "spk2utt": "19 19-1-0000 19-1-0001\n198 198-2-0001\n",
    "utt2num_samples": "19-1-0000 1600\n19-1-0001 4800\n198-2-0001 3200\n",
}


def test_write_gives_sorted_kaldi_files(tmp_path):
    write_kaldi_dir(tmp_path / "d", UTTS)
    for name in KALDI_FILES:
        assert (tmp_path / "d" / name).read_text() == GOOD[name], name
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(KALDI_FILES)


def test_read_and_validate_return_the_tables(tmp_path):
    d = write_files(tmp_path / "d", GOOD)
    data = validate_kaldi_dir(d)
    assert data == read_kaldi_dir(d)
    assert data["wav.scp"] == {"19-1-0000": "/a/19-1-0000.flac", "19-1-0001": "/a/19-1-0001.flac",
                               "198-2-0001": "/a/198-2-0001.flac"}
    assert data["utt2num_samples"] == {"19-1-0000": 1600, "19-1-0001": 4800, "198-2-0001": 3200}
    assert data["spk2utt"] == {"19": ["19-1-0000", "19-1-0001"], "198": ["198-2-0001"]}
    assert data["text"]["19-1-0001"] == "IT'S ME"


def test_optional_files_may_be_absent(tmp_path):
    d = write_files(tmp_path / "d", {k: GOOD[k] for k in ("wav.scp", "utt2num_samples")})
    assert set(validate_kaldi_dir(d, required=("wav.scp",))) == {"wav.scp", "utt2num_samples"}
    with pytest.raises(DataPrepError, match=r"text: missing"):
        validate_kaldi_dir(d)


def swap_lines(text, i, j):
    lines = text.splitlines(keepends=True)
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


@pytest.mark.parametrize(
    "file,content,match",
    [
        ("text", swap_lines(GOOD["text"], 0, 1), r"text: 19-1-0000: not sorted"),
        ("text", GOOD["text"].replace("19-1-0001 IT'S ME", "19-1-0001"),
         r"text: line 2: 19-1-0001: .*empty transcript"),
        ("text", GOOD["text"].replace("19-1-0001 IT'S ME", "19-1-0001   "),
         r"text: line 2: 19-1-0001: .*empty transcript"),
        ("utt2spk", GOOD["utt2spk"].replace("19-1-0001", "19-1-0002"),
         r"utt2spk: utterance 19-1-0002: not in wav.scp"),
        ("utt2num_samples", "19-1-0000 1600\n198-2-0001 3200\n",
         r"utt2num_samples: utterance 19-1-0001: missing \(it is in wav.scp\)"),
        ("utt2num_samples", GOOD["utt2num_samples"].replace("4800", "4.8k"),
         r"utt2num_samples: line 2: utterance 19-1-0001: '4.8k' is not an integer"),
        ("utt2num_samples", GOOD["utt2num_samples"].replace("4800", "0"),
         r"utt2num_samples: utterance 19-1-0001: 0 samples"),
        ("wav.scp", GOOD["wav.scp"] + "198-2-0001 /b.flac\n",
         r"wav.scp: line 4: 198-2-0001: duplicate"),
        ("spk2utt", "19 19-1-0000\n198 198-2-0001\n",
         r"spk2utt: speaker 19: utterance 19-1-0001: list disagrees"),
        ("spk2utt", "19 19-1-0001 19-1-0000\n198 198-2-0001\n",
         r"spk2utt: speaker 19: utterance 19-1-0001: list disagrees"),
        ("spk2utt", "19 19-1-0000 19-1-0001\n", r"spk2utt: speaker 198: missing"),
        ("utt2spk", "19-1-0000 19\n19-1-0001 b\n198-2-0001 198\n",
         r"utt2spk: utterance 198-2-0001: speaker '198' out of order"),
    ],
)
def test_validation_names_file_and_utterance(tmp_path, file, content, match):
    d = write_files(tmp_path / "d", {**GOOD, file: content})
    with pytest.raises(DataPrepError, match=match):
        validate_kaldi_dir(d)


def test_validation_with_fs_checks_the_audio(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, np.zeros(1600), 16000)
    sf.write(b, np.zeros(800), 8000)
    files = {"wav.scp": f"s-1 {a}\n", "utt2num_samples": "s-1 1600\n"}
    d = write_files(tmp_path / "d", files)
    data = validate_kaldi_dir(d, required=("wav.scp",), fs=16000)
    assert data["utt2num_samples"] == {"s-1": 1600}
    write_files(d, {"utt2num_samples": "s-1 1599\n"})
    with pytest.raises(DataPrepError, match=rf"utterance s-1: says 1599 samples, {a} has 1600"):
        validate_kaldi_dir(d, required=("wav.scp",), fs=16000)
    write_files(d, {"wav.scp": f"s-1 {b}\n", "utt2num_samples": "s-1 800\n"})
    with pytest.raises(DataPrepError, match=rf"{b}: utterance s-1: wrong sample rate: 8000 Hz"):
        validate_kaldi_dir(d, required=("wav.scp",), fs=16000)


@pytest.mark.parametrize(
    "utts,match",
    [
        (UTTS + [UTTS[0]], "198-2-0001: duplicate utterance id"),
        ([Utterance("a b", "/x", 1, speaker="a", text="T")], "utterance id 'a b'"),
        ([Utterance("a-1", "/x", 1, speaker="a", text=" ")], "a-1: empty or multi-line text"),
        ([Utterance("a-1", "/x", 0, speaker="a", text="T")], "a-1: 0 samples"),
        ([Utterance("a-1", "/x", 1, speaker="b", text="T"), Utterance("b-1", "/y", 1, speaker="a", text="T")],
         "b-1: speaker 'a' out of order"),
        ([], "no utterances"),
    ],
)
def test_write_refuses_bad_rows_and_writes_nothing(tmp_path, utts, match):
    with pytest.raises(DataPrepError, match=match):
        write_kaldi_dir(tmp_path / "d", utts)
    assert not (tmp_path / "d").exists()


def test_an_interrupted_write_leaves_no_wav_scp(tmp_path, monkeypatch):
    d = tmp_path / "d"
    write_kaldi_dir(d, UTTS)
    (d / "summary.json").write_text("{}")
    real = kaldi_dir.atomic_write_text

    def dies_at_utt2num_samples(path, text):
        if path.name == "utt2num_samples":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(kaldi_dir, "atomic_write_text", dies_at_utt2num_samples)
    with pytest.raises(KeyboardInterrupt):
        write_kaldi_dir(d, UTTS[:2])
    assert not (d / "wav.scp").exists() and not (d / "summary.json").exists()
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_bad_utt_log_error_raises_and_skip_counts(caplog):
    bad = [BadUtterance("u-1", "/a/u-1.flac", "wrong sample rate", "8000 Hz"),
           BadUtterance("u-2", "/a/u-2.flac", "missing audio", "no such file"),
           BadUtterance("u-3", "/a/u-3.flac", "wrong sample rate", "22050 Hz")]
    with pytest.raises(DataPrepError, match=r"^/a/u-1.flac: utterance u-1: wrong sample rate: "
                                            r"8000 Hz \(pass --on_bad_utt skip"):
        BadUttLog("error").add(bad[0])
    log = BadUttLog("skip")
    for b in bad:
        log.add(b)
    assert log.counts() == {"missing audio": 1, "wrong sample rate": 2}
    assert "skipping /a/u-3.flac: utterance u-3: wrong sample rate: 22050 Hz" in caplog.text
    summary = summarize(UTTS, log, 16000)
    assert summary["utterances"] == 3 and summary["speakers"] == 2
    assert summary["hours"] == round(9600 / 16000 / 3600, 4)
    assert summary["skipped"] == 3
    assert summary["skipped_utterances"][1] == {"utt_id": "u-2", "path": "/a/u-2.flac",
                                                "reason": "missing audio", "detail": "no such file"}
    table = format_summaries({"data/x": summary})
    assert "data/x" in table and "3 (missing audio: 1, wrong sample rate: 2)" in table
    with pytest.raises(ValueError, match="on_bad_utt"):
        BadUttLog("ignore")


def test_a_transcript_that_is_not_utf8_text_is_named(tmp_path):
    d = write_files(tmp_path / "d", GOOD)
    latin1 = GOOD["text"].replace("IT'S ME", "CAFÉ").encode("latin-1")
    (d / "text").write_bytes(latin1)
    with pytest.raises(DataPrepError, match=r"text: line 2: not UTF-8 text .*CAF"):
        validate_kaldi_dir(d)
    (d / "text").write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(DataPrepError, match=r"text: line 1: not UTF-8 text"):
        read_scp(d / "text")
