import json

import numpy as np
import pytest
import soundfile as sf

from espnet2_stacking.data.kaldi_dir import DataPrepError, validate_kaldi_dir
from espnet2_stacking.data.librispeech import prepare_librispeech

# set -> speaker -> chapter -> [(utterance number, samples, transcript)]
TREE = {
    "dev-clean": {
        "19": {"198": [(0, 1600, "NORTHANGER ABBEY"), (1, 2400, "IT WAS A DARK NIGHT")],
               "227": [(0, 3200, "I'M NOT SURE")]},
        "198": {"129742": [(0, 4000, "BY THE RIVER"), (1, 4800, "THE END")]},
    },
    "test-clean": {"61": {"70968": [(0, 2000, "HE BEGAN A CONFUSED COMPLAINT")]}},
}


def flac_path(root, s, spk, ch, i):
    return root / s / spk / ch / f"{spk}-{ch}-{i:04d}.flac"


def make_tree(root):
    rng = np.random.default_rng(0)
    for s, speakers in TREE.items():
        for spk, chapters in speakers.items():
            for ch, utts in chapters.items():
                (root / s / spk / ch).mkdir(parents=True)
                lines = []
                for i, n, text in utts:
                    sf.write(flac_path(root, s, spk, ch, i), 0.1 * rng.standard_normal(n), 16000)
                    lines.append(f"{spk}-{ch}-{i:04d} {text}\n")
                (root / s / spk / ch / f"{spk}-{ch}.trans.txt").write_text("".join(lines))
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "LibriSpeech")


def test_dev_clean_exact_files(tree, tmp_path):
    out = tmp_path / "data" / "dev_clean"
    summary = prepare_librispeech(tree, ["dev-clean"], out)
    f = {u: str(flac_path(tree, "dev-clean", *u.split("-")[:2], int(u.split("-")[2])))
         for u in ("19-198-0000", "19-198-0001", "19-227-0000", "198-129742-0000",
                   "198-129742-0001")}
    assert (out / "wav.scp").read_text() == (
        f"19-198-0000 {f['19-198-0000']}\n19-198-0001 {f['19-198-0001']}\n"
        f"19-227-0000 {f['19-227-0000']}\n198-129742-0000 {f['198-129742-0000']}\n"
        f"198-129742-0001 {f['198-129742-0001']}\n")
    assert (out / "text").read_text() == (
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 IT WAS A DARK NIGHT\n19-227-0000 I'M NOT SURE\n"
        "198-129742-0000 BY THE RIVER\n198-129742-0001 THE END\n")
    assert (out / "utt2spk").read_text() == (
        "19-198-0000 19\n19-198-0001 19\n19-227-0000 19\n198-129742-0000 198\n"
        "198-129742-0001 198\n")
    assert (out / "spk2utt").read_text() == (
        "19 19-198-0000 19-198-0001 19-227-0000\n198 198-129742-0000 198-129742-0001\n")
    assert (out / "utt2num_samples").read_text() == (
        "19-198-0000 1600\n19-198-0001 2400\n19-227-0000 3200\n198-129742-0000 4000\n"
        "198-129742-0001 4800\n")
    assert all(p.startswith("/") for p in f.values())
    expected = {"sets": ["dev-clean"], "utterances": 5, "hours": round(16000 / 16000 / 3600, 4),
                "speakers": 2, "skipped": 0, "skipped_by_reason": {}, "skipped_utterances": []}
    assert summary == expected
    assert json.loads((out / "summary.json").read_text()) == expected
    validate_kaldi_dir(out, fs=16000)


def test_sets_merge_into_one_dir(tree, tmp_path):
    out = tmp_path / "train"
    summary = prepare_librispeech(tree, ["test-clean", "dev-clean"], out, nj=2)
    assert summary["utterances"] == 6 and summary["speakers"] == 3
    data = validate_kaldi_dir(out, fs=16000)
    assert list(data["utt2spk"].values()) == ["19", "19", "19", "198", "198", "61"]
    assert data["text"]["61-70968-0000"] == "HE BEGAN A CONFUSED COMPLAINT"


def test_missing_set_is_an_error(tree, tmp_path):
    with pytest.raises(DataPrepError, match=r"LibriSpeech/dev-other: LibriSpeech set 'dev-other' "
                                            "not found"):
        prepare_librispeech(tree, ["dev-clean", "dev-other"], tmp_path / "d")


BAD = "19-198-0001"


def chapter(tree):
    return tree / "dev-clean" / "19" / "198"


def set_line(tree, new_line):
    trans = chapter(tree) / "19-198.trans.txt"
    lines = trans.read_text().splitlines(keepends=True)
    trans.write_text("".join(new_line if line.startswith(BAD) else line for line in lines))


def rewrite(tree, data, fs):
    sf.write(chapter(tree) / f"{BAD}.flac", data, fs)


def truncate(tree):
    p = chapter(tree) / f"{BAD}.flac"
    p.write_bytes(p.read_bytes()[:200])


CASES = {
    "missing file": (lambda t: (chapter(t) / f"{BAD}.flac").unlink(), "missing audio",
                     f"{BAD}.flac"),
    "no transcript": (lambda t: set_line(t, ""), "audio without transcript", f"{BAD}.flac"),
    "empty transcript": (lambda t: set_line(t, f"{BAD} \n"), "empty transcript",
                         "19-198.trans.txt"),
    "truncated": (truncate, "unreadable audio", f"{BAD}.flac"),
    "corrupt": (lambda t: (chapter(t) / f"{BAD}.flac").write_bytes(b"\x00junk" * 50),
                "unreadable audio", f"{BAD}.flac"),
    "zero-length": (lambda t: (chapter(t) / f"{BAD}.flac").write_bytes(b""), "zero-length audio",
                    f"{BAD}.flac"),
    "wrong rate": (lambda t: rewrite(t, np.zeros(1200), 8000), "wrong sample rate",
                   f"{BAD}.flac"),
    "stereo": (lambda t: rewrite(t, np.zeros((2400, 2)), 16000), "multi-channel audio",
               f"{BAD}.flac"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_utterance_error_names_file_and_utterance(tree, tmp_path, case):
    damage, reason, file = CASES[case]
    damage(tree)
    out = tmp_path / "d"
    with pytest.raises(DataPrepError) as info:
        prepare_librispeech(tree, ["dev-clean"], out, on_bad_utt="error")
    msg = str(info.value)
    assert f"/{file}: utterance {BAD}: {reason}: " in msg, msg
    assert not (out / "wav.scp").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_utterance_skip_counts_it(tree, tmp_path, case, caplog):
    damage, reason, file = CASES[case]
    damage(tree)
    out = tmp_path / "d"
    summary = prepare_librispeech(tree, ["dev-clean"], out, nj=2, on_bad_utt="skip")
    assert summary["utterances"] == 4 and summary["skipped"] == 1
    assert summary["skipped_by_reason"] == {reason: 1}
    (skipped,) = summary["skipped_utterances"]
    assert skipped["utt_id"] == BAD and skipped["path"].endswith(file)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert f"utterance {BAD}: {reason}" in caplog.text
    data = validate_kaldi_dir(out, fs=16000)
    assert BAD not in data["wav.scp"] and len(data["wav.scp"]) == 4


def test_missing_trans_file_skips_its_chapter(tree, tmp_path):
    (chapter(tree) / "19-198.trans.txt").unlink()
    summary = prepare_librispeech(tree, ["dev-clean"], tmp_path / "d", on_bad_utt="skip")
    assert summary["skipped_by_reason"] == {"audio without transcript": 2}
    assert summary["skipped_utterances"][0]["detail"] == "no 19-198.trans.txt"


def test_duplicate_utterance_is_an_error(tree, tmp_path):
    trans = tree / "dev-clean" / "19" / "227" / "19-227.trans.txt"
    trans.write_text(trans.read_text() + "19-198-0000 AGAIN\n")
    with pytest.raises(DataPrepError, match=r"19-227.trans.txt: utterance 19-198-0000: duplicate"):
        prepare_librispeech(tree, ["dev-clean"], tmp_path / "d", on_bad_utt="skip")
