#!/usr/bin/env bash
# Demo recipe, end to end on a CPU with no download: a synthetic espeak-ng corpus (stage 1), a
# small HuBERT-style teacher pretrained on it by ESPnet's SSL task (stage 0), interleaved
# stacking distillation 2 -> 4 -> 6 (stages 2-4), and SUPERB-style ASR on the student, the
# teacher and a random student of the same shape (stages 5-7 -> RESULTS.md).
#
#   ./run.sh                   the demo (under 20 minutes on 2 CPU cores)
#   ./run.sh --smoke true      the same stages at toy size, ASR on the student and the random
#                              student only (under 3 minutes; the test suite runs it)
#   ./run.sh --teacher FILE    distil your own teacher instead (stage 0 is then skipped)
# Any distill.sh option (./distill.sh --help) can be given, e.g. ./run.sh --stage 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./path.sh

smoke=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
size_opts=()
case "${smoke}" in
    true)
        # Every stage at toy size: what it proves is that the stages connect, not quality.
        size_opts=(
            --local_data_opts "--num_utts 16"
            --teacher_args "--max_epoch 1 --num_iters_per_epoch 2"
            --distill_args "--max_epoch 2 --num_iters_per_epoch 3 --batch_size 4"
            --asr_args "--max_epoch 1 --num_iters_per_epoch 2 --batch_size 4"
            # the teacher's ASR run is the same code path (test/egs2/test_asr_stages.py)
            --asr_upstreams "student student_random"
        ) ;;
    false) ;;
    *) echo "--smoke must be true or false, got '${smoke}'" >&2; exit 2 ;;
esac

./distill.sh \
    --teacher_config conf/teacher_hubert_demo.yaml \
    --train_set train \
    --valid_set dev \
    --test_sets "test" \
    --nj 2 \
    --asr_nj 2 \
    --distill_config conf/distill_interleaved_eql.yaml \
    --asr_config conf/asr_demo.yaml \
    "${size_opts[@]}" "${args[@]}"
