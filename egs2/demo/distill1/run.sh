#!/usr/bin/env bash
# Demo recipe: a synthetic espeak-ng corpus, a small teacher, interleaved stacking
# distillation and a small downstream ASR, end to end on a CPU. No arguments needed.
# Any distill.sh option (./distill.sh --help) can be given, e.g. ./run.sh --stop_stage 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./path.sh

# Until the demo trains its own teacher (stage 0), a random HuBERT-shaped teacher stands in:
# it exercises every stage but carries no learned structure. Give --teacher FILE for a real one.
./distill.sh \
    --teacher "random:hubert?layers=6&dim=64&heads=4&ffn=256&conv=64&pos_kernel=32&pos_groups=8" \
    --train_set train \
    --valid_set dev \
    --test_sets "test" \
    --nj 2 \
    --distill_config conf/distill_interleaved_eql.yaml \
    --asr_config conf/asr_demo.yaml \
    "$@"
