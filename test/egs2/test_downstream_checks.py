"""Stage 5's checks of the downstream tasks' inputs, before any training: bad phone
transcripts, speaker-ID splits, missing data and options, each named (bash and the check
scripts only: no ESPnet start, no training)."""

import subprocess
import sys
from pathlib import Path

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"


def stage5(cwd: Path, *args):
    cmd = [str(DISTILL_SH), "--stage", "5", "--stop_stage", "5", "--python", sys.executable,
           "--datadir", "data", "--expdir", "exp", "--test_sets", "test", "--upstreams", "fbank",
           *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def data_dir(root: Path, name: str, utts, phones=None, speakers=None):
    d = root / "data" / name
    write(d / "wav.scp", "".join(f"{u} /a/{u}.wav\n" for u in utts))
    if phones is not None:
        write(d / "text_phn", "".join(f"{u} {p}\n" for u, p in phones.items()))
    if speakers is not None:
        write(d / "utt2spk", "".join(f"{u} {s}\n" for u, s in speakers.items()))


def test_bad_phone_transcripts_are_reported_per_file_before_training(tmp_path):
    write(tmp_path / "pr.yaml", "frontend: stacking_upstream\n")
    # a kept phone list (as a rerun keeps it), so no ESPnet tokenizer starts here
    write(tmp_path / "data/token_list/phn/tokens.txt", "<blank>\n<unk>\na\nb\n<sos/eos>\n")
    data_dir(tmp_path, "train", ["t1", "t2"], {"t1": "a b", "t2": "b a"})
    data_dir(tmp_path, "dev", ["d1", "d2"], {"d1": "a b", "d2": "a q b"})  # q: not a phone of train
    data_dir(tmp_path, "test", ["e1", "e2", "e3"], {"e1": "a"})  # e2, e3: no phones
    res = stage5(tmp_path, "--downstream_tasks", "pr", "--pr_config", "pr.yaml")
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert ("data/dev/text_phn: 1 of 5 tokens (20.00 %) in 1 utterances are not in "
            "data/token_list/phn/tokens.txt and become <unk>: 'q' x1, e.g. in d2") in err
    assert "data/test/text_phn: no transcript for 2 of the 3 utterances of data/test/wav.scp, e.g. e2, e3" in err
    assert "data/train/text_phn: 0 of 4 tokens" in err
    assert not (tmp_path / "exp/pr_fbank").exists()  # nothing trained
    # no phone transcripts at all: named, with where they come from
    (tmp_path / "data/dev/text_phn").unlink()
    res = stage5(tmp_path, "--downstream_tasks", "pr", "--pr_config", "pr.yaml")
    assert res.returncode == 1 and "data/dev/text_phn missing: task pr needs phone transcripts" in res.stderr


def test_speaker_id_splits_are_checked_before_training(tmp_path):
    write(tmp_path / "sid.yaml", "frontend: stacking_upstream\n")
    data_dir(tmp_path, "sid_train", ["a1", "b1"], speakers={"a1": "a", "b1": "b"})
    data_dir(tmp_path, "sid_dev", ["a2", "b2"], speakers={"a2": "a", "b2": "b"})
    data_dir(tmp_path, "sid_test", ["a3", "c3"], speakers={"a3": "a", "c3": "c"})  # c: test only
    res = stage5(tmp_path, "--downstream_tasks", "sid", "--sid_config", "sid.yaml")
    assert res.returncode == 1, res.stderr
    assert "error: data/sid_test/utt2spk: speaker c is not in data/sid_train" in res.stderr
    assert "1 utterance(s), c3" in res.stderr
    assert "warning: speaker b (1 utterance(s) in data/sid_train) has none in data/sid_test" in res.stderr
    assert not (tmp_path / "data/token_list/spk").exists() and not (tmp_path / "exp/sid_fbank").exists()
    # no SID splits (e.g. a corpus too small for them): said, and the stage stops
    (tmp_path / "data/sid_dev/wav.scp").unlink()
    res = stage5(tmp_path, "--downstream_tasks", "sid", "--sid_config", "sid.yaml")
    assert res.returncode == 1
    assert "data/sid_dev/wav.scp missing: task sid needs sid_train, sid_dev and sid_test" in res.stderr


def test_tasks_options_and_the_old_upstream_option(tmp_path):
    res = stage5(tmp_path, "--downstream_tasks", "asr pr", "--asr_config", "nowhere.yaml")
    assert res.returncode == 2 and "--asr_config 'nowhere.yaml' not found (task asr" in res.stderr
    write(tmp_path / "asr.yaml", "frontend: stacking_upstream\n")
    res = stage5(tmp_path, "--downstream_tasks", "asr pr", "--asr_config", "asr.yaml")
    assert res.returncode == 2 and "--pr_config '' not found (task pr" in res.stderr
    res = stage5(tmp_path, "--downstream_tasks", "asr ser", "--asr_config", "asr.yaml")
    assert res.returncode == 2 and "unknown task 'ser' in --downstream_tasks 'asr ser' (known: asr pr sid)" in res.stderr
    res = stage5(tmp_path, "--downstream_tasks", "asr", "--asr_config", "asr.yaml", "--asr_upstreams", "mfcc")
    assert "--asr_upstreams is the old name of --upstreams" in res.stderr
    assert res.returncode == 2 and "unknown upstream 'mfcc' in --upstreams" in res.stderr


def test_dumped_upstream_states_need_one_setting_for_every_task(tmp_path):
    write(tmp_path / "asr.yaml", "frontend: stacking_upstream\n")
    res = stage5(tmp_path, "--downstream_tasks", "asr", "--asr_config", "asr.yaml", "--downstream_feats", "dumps")
    assert res.returncode == 2 and "--downstream_feats must be online or dump, got 'dumps'" in res.stderr
    write(tmp_path / "pr.yaml", "frontend: stacking_upstream\nfrontend_conf:\n    upstream_dtype: bfloat16\n")
    res = stage5(tmp_path, "--downstream_tasks", "asr pr", "--asr_config", "asr.yaml", "--pr_config", "pr.yaml",
                 "--downstream_feats", "dump")
    assert res.returncode == 2, res.stderr
    assert "the tasks' configs disagree on frontend_conf.upstream_dtype (float32 bfloat16 for asr pr)" in res.stderr
    assert not (tmp_path / "dump").exists()  # nothing dumped


def test_named_upstreams_are_checked_before_anything_runs(tmp_path):
    """NAME=SPEC puts any upstream (another run's export) beside the built-in ones."""
    write(tmp_path / "pr.yaml", "frontend: stacking_upstream\n")
    write(tmp_path / "other/model.pth", "")

    def run(upstreams):
        return stage5(tmp_path, "--downstream_tasks", "pr", "--pr_config", "pr.yaml",
                      "--upstreams", upstreams)

    for upstreams, rc, said in [
        ("a/b=other/model.pth", 2, "'a/b=other/model.pth': the name must be letters, digits"),
        ("teacher=other/model.pth", 2, "teacher is a built-in upstream's name; choose another"),
        ("mine=other/nothing.pth", 1, "'mine=other/nothing.pth': other/nothing.pth not found"),
        ("mine=other/model.pth fbank mine=fbank", 2, "--upstreams: 'mine' given twice"),
    ]:
        res = run(upstreams)
        assert (res.returncode, said in res.stderr) == (rc, True), res.stderr
    # accepted: on to the task's inputs (no phone transcripts here, so it stops there)
    res = run("mine=other/model.pth fbank")
    assert res.returncode == 1 and "data/train/text_phn missing" in res.stderr, res.stderr
