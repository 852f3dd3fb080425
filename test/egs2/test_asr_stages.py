"""Stages 5-7 of the stage driver (token list, collect stats, ASR training, parallel CTC
decoding, scoring) on a tiny synthetic corpus with a tiny random upstream."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_data_dir

DISTILL_SH = Path(__file__).parents[2] / "egs2" / "TEMPLATE" / "distill1" / "distill.sh"
UPSTREAM = "random:hubert?layers=2&dim=16&heads=2&ffn=32&conv=16&pos_kernel=8&pos_groups=2"


def asr_config(path: Path) -> Path:
    demo = yaml.safe_load((DISTILL_SH.parents[2] / "demo/distill1/conf/asr_demo.yaml").read_text())
    demo.update(preencoder_conf={"output_size": 8}, max_epoch=2, batch_size=4,
                encoder_conf={**demo["encoder_conf"], "num_layers": 1, "hidden_size": 8,
                              "output_size": 8})
    path.write_text(yaml.safe_dump(demo))
    return path


@pytest.mark.slow
def test_train_decode_score_round_trip(tmp_path):
    write_data_dir(tmp_path / "data", "train", 8)
    write_data_dir(tmp_path / "data", "dev", 3, seed=1)
    cmd = [str(DISTILL_SH), "--stage", "5", "--python", sys.executable, "--nj", "2",
           "--datadir", "data", "--expdir", "exp", "--train_set", "train", "--valid_set", "dev",
           "--test_sets", "dev", "--teacher", UPSTREAM, "--upstreams", "teacher student_random",
           "--distill_config", "conf/distill_x.yaml", "--asr_config", str(asr_config(tmp_path / "asr.yaml")),
           "--asr_args", "--num_iters_per_epoch 2", "--results", "RESULTS.md",
           "--decode_min_utts", "1"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-4000:]
    assert "WARNING: exp/student_x_random/model.pth missing" in res.stderr
    # collect stats only measured shapes: one pass, shared by every upstream
    assert (tmp_path / "exp/asr_stats_char/train/speech_shape").exists()
    assert "The training was finished" in (tmp_path / "exp/asr_teacher/train.log").read_text()
    assert re.search("ASR on 'teacher' finished: valid loss_ctc [0-9.]+", res.stderr)

    tokens = (tmp_path / "data/token_list/char/tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>" and "<space>" in tokens
    asr = tmp_path / "exp/asr_teacher"
    config = yaml.safe_load((asr / "config.yaml").read_text())
    assert config["frontend_conf"]["upstream"] == UPSTREAM
    assert config["preencoder_conf"]["input_size"] == 16  # the upstream's width
    assert (asr / "2epoch.pth").exists()
    # two decoding jobs, merged into one sorted hypothesis file of every utterance
    assert len(list((asr / "decode_dev/logdir").glob("output.*"))) == 2
    hyp_ids = [x.split()[0] for x in (asr / "decode_dev/1best_recog/text").read_text().splitlines()]
    ref_ids = [x.split()[0] for x in (tmp_path / "data/dev/text").read_text().splitlines()]
    assert hyp_ids == sorted(ref_ids)
    scores = json.loads((asr / "decode_dev/scores.json").read_text())
    assert scores["wer"]["snt"] == 3 and scores["wer"]["wrd"] == 6  # "A TONE" x 3

    results = (tmp_path / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    # the ASR table: WER, CER, training and decoding time (what the jobs recorded)
    row = re.search(r"^\|teacher\|teacher\|([\d,]+)\|-\|-\|([\d.]+)\|([\d.]+)\|([\d.]+)\|([\d.]+)\|$", results, re.M)
    assert row, results
    assert float(row.group(2)) == pytest.approx(100 * scores["wer"]["error_rate"], abs=0.06)
    assert float(row.group(4)) == float((asr / "train_seconds").read_text()) > 0
    job_seconds = [float(p.read_text()) for p in (asr / "decode_dev/logdir").glob("seconds.*")]
    assert len(job_seconds) == 2  # the sum of the two decoding jobs' wall times
    assert float(row.group(5)) == pytest.approx(sum(job_seconds), abs=0.11)
    times = [t.split("\t")[0] for t in (tmp_path / "exp/stage_times.tsv").read_text().splitlines()]
    assert times == ["5", "6", "7"]

    # greedy CTC decoding by default (SUPERB's); ESPnet's prefix search with --ctc_greedy false,
    # into the same layout; a bad value stops before any decoding dir is cleared
    first_log = asr / "decode_dev/logdir/decode.1.log"
    assert "espnet2_stacking.bin.ctc_greedy_inference" in first_log.read_text()
    stage6 = cmd[:2] + ["6", "--stop_stage", "6"] + cmd[3:]
    res = subprocess.run(stage6 + ["--ctc_greedy", "maybe"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 2 and "--ctc_greedy must be true or false, got 'maybe'" in res.stderr
    assert (asr / "decode_dev/1best_recog/text").exists()
    res = subprocess.run(stage6 + ["--ctc_greedy", "false"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "espnet2_stacking.bin.asr_inference" in first_log.read_text()
    hyp_ids = [x.split()[0] for x in (asr / "decode_dev/1best_recog/text").read_text().splitlines()]
    assert hyp_ids == sorted(ref_ids)

    # a decoding job that fails is named with the end of its log, and the stage stops
    (tmp_path / "exp/asr_teacher/valid.loss.ave.pth").write_bytes(b"not a checkpoint")
    res = subprocess.run(stage6, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 1
    # (both jobs run at once, so one or both fail before the stop)
    assert re.search(r"[12] of 2 job\(s\) failed: decoding job [12]/2 of exp/asr_teacher/decode_dev "
                     r"\(log: exp/asr_teacher/decode_dev/logdir/decode\.[12]\.log\)", res.stderr), \
        res.stderr[-3000:]
    assert re.search(r"the end of exp/asr_teacher/decode_dev/logdir/decode\.[12]\.log:\n", res.stderr)

    # a head trained on another upstream is not resumed on a new one: moved aside, trained
    # again (ESPnet's --resume would continue its checkpoints on the new states)
    assert (asr / "upstream_id").read_text().strip() == UPSTREAM
    other = UPSTREAM.replace("dim=16", "dim=12")
    stage5 = cmd[:2] + ["5", "--stop_stage", "5"] + cmd[3:] + ["--upstreams", "teacher"]
    stage5[stage5.index("--teacher") + 1] = other
    res = subprocess.run(stage5, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (f"exp/asr_teacher was trained on upstream {UPSTREAM}, now {other}: moved to "
            "exp/asr_teacher.prev, trained again") in res.stderr
    assert (tmp_path / "exp/asr_teacher.prev/upstream_id").read_text().strip() == UPSTREAM
    assert (asr / "upstream_id").read_text().strip() == other
    assert "The training was finished" in (asr / "train.log").read_text()
    assert yaml.safe_load((asr / "config.yaml").read_text())["preencoder_conf"]["input_size"] == 12
    # the same upstream again: resumed (ESPnet finds the run finished), nothing moved
    (tmp_path / "exp/asr_teacher.prev").rename(tmp_path / "old")
    res = subprocess.run(stage5, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and "moved to" not in res.stderr
    assert not (tmp_path / "exp/asr_teacher.prev").exists()
