#!/usr/bin/env bash
# The bench's default setting's shared inputs, prepared once (a rerun reuses what is done): the
# demo recipe's stages 0-2 (egs2/demo/distill1): the espeak-ng corpus, a 6 x 128 HuBERT-style
# teacher pretrained on it (conf/teacher_hubert_6x128.yaml) and its dumped targets for the
# student of conf/distill_6x64_from_6x128.yaml, with its CNN's output. Everything goes under
# bench/work/teacher_6x128 (exp/teacher/model.pth, dump/{train,dev}); the corpus under the demo's
# data/. run_cpu.sh, target_codecs.py, student_arch.py and downstream_methods.py read these.
#   bench/prepare_teacher.sh [--nj N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
nj=2
while [ $# -gt 0 ]; do
    case "$1" in
        --nj) nj=$2; shift 2 ;;
        *) echo "unknown option $1 (options: --nj)" >&2; exit 2 ;;
    esac
done
prep=${root}/bench/work/teacher_6x128
"${root}/egs2/demo/distill1/run.sh" --stop_stage 2 --nj "${nj}" \
    --teacher_config "${root}/bench/conf/teacher_hubert_6x128.yaml" \
    --distill_config "${root}/bench/conf/distill_6x64_from_6x128.yaml" \
    --expdir "${prep}/exp" --dumpdir "${prep}/dump" --dump_args "--cnn_features true"
