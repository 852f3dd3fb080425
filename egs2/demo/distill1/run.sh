#!/usr/bin/env bash
# Demo recipe, end to end on a CPU with no download: a synthetic espeak-ng corpus (stage 1), a
# small HuBERT-style teacher pretrained on it by ESPnet's SSL task (stage 0), interleaved
# stacking distillation 2 -> 4 -> 6 (stages 2-4), and SUPERB-style ASR, phoneme recognition
# and speaker ID on the student, the teacher, a random student of the same shape and log-mel
# filterbanks (stages 5-7 -> RESULTS.md). Each upstream runs once per data dir and the heads
# train on its dumped states (--downstream_feats dump; FBANK stays online).
#
#   ./run.sh                   the demo
#   ./run.sh --smoke true      the same stages at toy size, PR and SID on the student and
#                              FBANK only, on 4 training voices (so that SID has splits; the
#                              test suite runs it)
#   ./run.sh --full true       the demo with a teacher pretrained 16x longer with a 10x longer
#                              warmup (conf/teacher_hubert_full.yaml: 9,600 updates, about 38 min
#                              on 2 cores), distilled 20x longer (6,000 updates, about 24 min)
#                              and with PR and SID heads trained until they level off
#                              (conf/pr_full.yaml, sid_full.yaml): student and teacher beat
#                              FBANK on PR (12.1 and 13.1 against 15.5 PER, means over head
#                              seeds); about 74 min in all from a fresh clone
#   ./run.sh --teacher FILE    distil your own teacher instead (stage 0 is then skipped)
# Any distill.sh option (./distill.sh --help) can be given, e.g. ./run.sh --stage 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

smoke=false
full=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=$2; shift 2 ;;
        --full) full=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
size_opts=()
case "${smoke}" in
    true)
        # Every stage at toy size: what it proves is that the stages connect, not quality.
        size_opts=(
            # 6 voices (1 dev, 1 test, 4 train): 4 utterances per train voice, 1 each to
            # sid_dev and sid_test
            --local_data_opts "--num_utts 16 --accents en-us --variants m1,m2,m3,f1,f2,f3 --dev_voices 1 --test_voices 1 --sid_held_out_every 3"
            --teacher_args "--max_epoch 1 --num_iters_per_epoch 2"
            --distill_args "--max_epoch 2 --num_iters_per_epoch 3 --batch_size 4"
            --asr_args "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4"
            --pr_args "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4"
            # ASR is the same code path as PR (ESPnet's ASR task) on characters: its recipe
            # path is test/egs2/test_asr_stages.py's, which keeps the suite's time in budget
            --downstream_tasks "pr sid"
            --sid_args "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4"
            # the teacher's and the random student's runs are the same code path
            # (test/egs2/test_asr_stages.py)
            --upstreams "student fbank"
        ) ;;
    false) ;;
    *) echo "--smoke must be true or false, got '${smoke}'" >&2; exit 2 ;;
esac
case "${full}" in
    true)
        [ "${smoke}" = false ] || { echo "--smoke true and --full true exclude each other" >&2; exit 2; }
        # The demo's teacher with a longer schedule (README: "What did beat FBANK"); its
        # student needs a distillation to match (120 epochs of 50 updates, not 6: at 300 it
        # stayed 34 PER points behind an earlier --full teacher, at 3,000 4 behind this one's
        # 4,800-update checkpoint; 12,000 made PR worse than 6,000). Given after run.sh's
        # own options, so these win.
        # Its PR and SID heads train 6x and 10x longer, the PR head decoding the average of
        # its 5 best checkpoints (conf/pr_full.yaml, sid_full.yaml): the demo's 300 PR updates
        # left heads on CTC's blank plateau, so the head seed, not the upstream, decided the
        # PR ranking.
        size_opts=(--teacher_config conf/teacher_hubert_full.yaml --distill_args "--max_epoch 120"
                   --pr_config conf/pr_full.yaml --sid_config conf/sid_full.yaml) ;;
    false) ;;
    *) echo "--full must be true or false, got '${full}'" >&2; exit 2 ;;
esac
# after the size options are checked: a first run installs tools/venv (minutes)
. ./path.sh

./distill.sh \
    --teacher_config conf/teacher_hubert_demo.yaml \
    --train_set train \
    --valid_set dev \
    --test_sets "test" \
    --nj 2 \
    --asr_nj 2 \
    --distill_config conf/distill_interleaved_eql.yaml \
    --downstream_tasks "asr pr sid" \
    --downstream_feats dump \
    --upstreams "student teacher student_random fbank" \
    --asr_config conf/asr_demo.yaml \
    --pr_config conf/pr_demo.yaml \
    --sid_config conf/sid_demo.yaml \
    "${size_opts[@]}" "${args[@]}"
