import json
import random
import re
import shutil

import pytest
import soundfile as sf

from espnet2_stacking.data.demo_corpus import (
    ACCENTS,
    PHONE_TEXT,
    VARIANTS,
    WORDS_FILE,
    Vocabulary,
    make_sentence,
    phone_transcript,
    plan_utterance,
    prepare_demo_corpus,
    split_voices,
)
from espnet2_stacking.data.kaldi_dir import DataPrepError, validate_kaldi_dir
from espnet2_stacking.data.speaker_split import speakers_missing_from, split_by_speaker
from espnet2_stacking.data.utterances import Utterance

needs_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to synthesise (tools/install.sh installs them)",
)
TINY = dict(accents=["en-us", "en-gb", "en-029"], variants=["m1", "f2"], dev_voices=2,
            test_voices=2)


def test_vocabulary_has_over_a_thousand_entries_and_sentences_use_it():
    vocab = Vocabulary.from_file()
    lines = WORDS_FILE.read_text().splitlines()
    entries = [line.split()[1] for line in lines if line.strip() and not line.startswith("#")]
    assert len(set(entries)) >= 1000
    assert len(vocab.words()) >= 2000
    rng = random.Random(0)
    sentences = [make_sentence(vocab, rng) for _ in range(3000)]
    used = {w for text, _ in sentences for w in text.split()}
    assert len(used) >= 1000  # the generator really draws on the whole list
    assert used <= vocab.words()
    for text, prompt in sentences:
        assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text), text
        assert 4 <= len(text.split()) <= 15, text
        assert prompt[:-1].upper() == text and prompt[-1] in ".?"
    assert len({t for t, _ in sentences}) > 2990  # not a handful of fixed phrases
    assert any("'" in t for t, _ in sentences) and any(p.endswith("?") for _, p in sentences)


def test_articles_agree():
    rng = random.Random(1)
    vocab = Vocabulary.from_file()
    texts = [make_sentence(vocab, rng)[0] for _ in range(2000)]
    assert not [t for t in texts if re.search(r"\bA [AEIOU]", t)]
    assert [t for t in texts if re.search(r"\bAN [AEIOU]", t)]


def test_bad_word_list_line_is_named(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("noun dog dogs\nverb walk walks walked\n")
    with pytest.raises(ValueError, match=r"w.txt: line 2: bad entry 'verb walk walks walked'"):
        Vocabulary.from_file(path)


def test_voice_split_is_disjoint_seeded_and_complete():
    splits = split_voices(ACCENTS, VARIANTS, 8, 8, seed=3)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [72, 8, 8]
    every = splits["train"] + splits["dev"] + splits["test"]
    assert sorted(every) == sorted(f"{a}+{v}" for a in ACCENTS for v in VARIANTS)
    assert split_voices(ACCENTS, VARIANTS, 8, 8, seed=3) == splits
    assert split_voices(ACCENTS, VARIANTS, 8, 8, seed=4)["test"] != splits["test"]
    with pytest.raises(DataPrepError, match="at least one for train"):
        split_voices(["en-us"], ["m1", "m2"], 1, 1, seed=0)


def test_plan_depends_only_on_seed_split_and_index():
    vocab = Vocabulary.from_file()
    a = plan_utterance(0, "train", 5, ["en-us+m1", "en-gb+f2"], vocab)
    assert a == plan_utterance(0, "train", 5, ["en-us+m1", "en-gb+f2"], vocab)
    assert a.voice == "en-gb+f2" and a.utt_id == "en-gb_f2-000005" and a.speaker == "en-gb_f2"
    assert 140 <= a.speed <= 200 and 30 <= a.pitch <= 70
    assert plan_utterance(1, "train", 5, ["en-us+m1", "en-gb+f2"], vocab).text != a.text
    assert plan_utterance(0, "dev", 5, ["en-us+m1", "en-gb+f2"], vocab).text != a.text


def corpus_bytes(out):
    """{split: [(utt, text, audio bytes)]} of a prepared corpus."""
    result = {}
    for split in ("train", "dev", "test"):
        data = validate_kaldi_dir(out / split, fs=16000)
        result[split] = [(u, data["text"][u], open(p, "rb").read())
                         for u, p in data["wav.scp"].items()]
    return result


@needs_tools
def test_tiny_corpus_is_16k_mono_split_by_voice_and_deterministic(tmp_path):
    one = prepare_demo_corpus(tmp_path / "a", num_utts=3, seed=7, nj=2, **TINY)
    two = prepare_demo_corpus(tmp_path / "b", tmp_path / "wavs_b", num_utts=3, seed=7, **TINY)
    assert one == two
    a, b = corpus_bytes(tmp_path / "a"), corpus_bytes(tmp_path / "b")
    assert a == b  # same texts, voices (in the ids) and audio bytes
    voices = {s: set(one[s]["voices"]) for s in one}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["dev"]
    assert not voices["dev"] & voices["test"]
    for split, summary in one.items():
        assert summary["utterances"] == 3 and summary["skipped"] == 0
        assert summary == json.loads((tmp_path / "a" / split / "summary.json").read_text())
        data = validate_kaldi_dir(tmp_path / "a" / split, fs=16000)
        for utt, path in data["wav.scp"].items():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.frames == data["utt2num_samples"][utt] > 8000
            assert path.startswith(str(tmp_path / "a" / "wavs" / split))
            assert data["utt2spk"][utt].replace("_", "+") in voices[split]
        assert summary["hours"] == round(sum(data["utt2num_samples"].values()) / 16000 / 3600, 4)
    prepare_demo_corpus(tmp_path / "c", num_utts=3, seed=8, **TINY)
    other = corpus_bytes(tmp_path / "c")
    assert [t for _, t, _ in other["train"]] != [t for _, t, _ in a["train"]]


@needs_tools
def test_rerun_reuses_complete_files_only(tmp_path):
    prepare_demo_corpus(tmp_path, num_utts=2, seed=0, **TINY)
    wavs = sorted((tmp_path / "wavs").rglob("*.wav"))
    assert len(wavs) == 6
    stamps = {p: p.stat().st_mtime_ns for p in wavs}
    wavs[0].unlink()  # as if a run had died before writing it
    (wavs[0].parent / (wavs[0].name + ".123.tmp")).write_bytes(b"partial")
    prepare_demo_corpus(tmp_path, num_utts=2, seed=0, **TINY)
    assert sf.info(wavs[0]).frames > 0
    assert all(p.stat().st_mtime_ns == stamps[p] for p in wavs[1:])


@needs_tools
def test_duration_target_takes_the_shortest_prefix(tmp_path):
    seconds = 6.0
    summaries = prepare_demo_corpus(tmp_path, train_hours=seconds / 3600, dev_minutes=0.05,
                                    test_minutes=0.05, seed=0, **TINY)
    for split, target in (("train", seconds), ("dev", 3.0), ("test", 3.0)):
        data = validate_kaldi_dir(tmp_path / split)
        lengths = [data["utt2num_samples"][u] / 16000
                   for u in sorted(data["utt2num_samples"], key=lambda u: u[-6:])]
        assert sum(lengths) >= target > sum(lengths[:-1]), (split, lengths)
        assert summaries[split]["utterances"] == len(lengths)


@needs_tools
def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(DataPrepError, match=r"espeak-ng has no variant \['m99'\]"):
        prepare_demo_corpus(tmp_path, num_utts=1, accents=["en-us"], variants=["m1", "m99"],
                            dev_voices=1, test_voices=1)


@needs_tools
def test_phone_transcript_is_ipa_without_stress_and_depends_on_the_accent():
    us = phone_transcript("en-us+m1", "the old dog slept.")
    gb = phone_transcript("en-gb-x-rp+m1", "the old dog slept.")
    assert "ˈ" not in us and "ˌ" not in us and "  " not in us
    assert us.split()[:2] == ["ð", "ɪ"] and us.split()[-4:] == ["l", "ɛ", "p", "t"]
    assert us != gb  # the synthesiser's own accent: 'dog' differs between the two
    assert phone_transcript("en-us+m1", "the old dog slept.") == us


@needs_tools
def test_every_split_has_phone_transcripts_of_its_utterances(tmp_path):
    prepare_demo_corpus(tmp_path, num_utts=3, seed=3, **TINY)
    for split in ("train", "dev", "test"):
        data = validate_kaldi_dir(tmp_path / split)
        rows = dict(line.split(" ", 1) for line in
                    (tmp_path / split / PHONE_TEXT).read_text(encoding="utf-8").splitlines())
        assert set(rows) == set(data["wav.scp"])
        for utt, phones in rows.items():
            assert len(phones.split()) >= 2 * len(data["text"][utt].split())
    # too few utterances per train voice for speaker ID: no sid_* dirs, nothing half-written
    assert not any((tmp_path / f"sid_{s}").exists() for s in ("train", "dev", "test"))


@needs_tools
def test_sid_splits_share_the_train_voices_and_partition_train(tmp_path):
    summaries = prepare_demo_corpus(tmp_path, num_utts=12, seed=0, sid_held_out_every=3,
                                    **TINY)
    train = validate_kaldi_dir(tmp_path / "train")
    sid = {s: validate_kaldi_dir(tmp_path / f"sid_{s}") for s in ("train", "dev", "test")}
    ids = [set(d["wav.scp"]) for d in sid.values()]
    assert set.union(*ids) == set(train["wav.scp"]) and sum(map(len, ids)) == 12
    speakers = [set(d["utt2spk"].values()) for d in sid.values()]
    assert speakers[0] == speakers[1] == speakers[2] == set(train["utt2spk"].values())
    assert summaries["sid_test"]["utterances"] == len(ids[2]) == 4  # 2 voices x 6 utts, 1 in 3
    assert summaries["sid_test"]["speakers_missing"] == {}


def _utt(utt_id, speaker):
    return Utterance(utt_id, f"/w/{utt_id}.wav", 16000, speaker=speaker, text="A")


def test_split_by_speaker_is_periodic_per_speaker_and_names_short_speakers():
    utts = [_utt(f"a-{i:02d}", "a") for i in range(7)] + [_utt("b-00", "b"), _utt("b-01", "b")]
    splits = split_by_speaker(list(reversed(utts)), held_out_every=3)
    ids = {k: [u.utt_id for u in v] for k, v in splits.items()}
    assert ids == {"train": ["a-00", "a-03", "a-06", "b-00"], "dev": ["a-01", "a-04", "b-01"],
                   "test": ["a-02", "a-05"]}
    assert speakers_missing_from(splits) == {"b": ["test"]}
    with pytest.raises(DataPrepError, match="at least 3"):
        split_by_speaker(utts, held_out_every=2)
    with pytest.raises(DataPrepError, match="x-1.*no speaker"):
        split_by_speaker([Utterance("x-1", "/w/x.wav", 5)])
