#!/usr/bin/env bash
# The bench's default setting, end to end from a fresh clone, in one command (about an hour on
# a 2-core CPU; README "Results" quotes its output):
#   1. bench/prepare_teacher.sh: the demo recipe's stages 0-2 (egs2/demo/distill1): the espeak-ng
#      corpus, a 6 x 128 HuBERT-style teacher pretrained on it (conf/teacher_hubert_6x128.yaml),
#      its dumped targets for the student of conf/distill_6x64_from_6x128.yaml and its CNN's
#      output;
#   then for each student CNN in --cnn (trained: the paper's setting, the CNN trains with the
#   student; frozen: the CNN is the teacher's and stays frozen, no CNN backward, and the
#   dumped-target runs read its output from the dump instead of recomputing it):
#   2. stacking_speed.py: none, interleaved EQL / PROP-1, gradual EQL and MIDAS EQL, each with
#      dumped targets and with the online teacher, --updates per run;
#   3. layer_similarity.py: teacher-student CKA heatmaps of the dumped-target students;
#   4. step_profile.py: where a step's time goes (teacher, CNN, layers, backward, ...) per depth.
# Writes bench/results/<name>_cnn_<cnn>.{json,png}, ..._similarity*.{json,png}, ..._profile.json.
# A rerun reuses the corpus, the teacher and the dump; the training runs start over.
#   bench/run_cpu.sh [--updates N] [--curve_points N] [--name NAME] [--nj N] [--cnn "frozen trained"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

updates=300            # updates per training run (the demo recipe's distillation budget)
curve_points=6         # validation passes per run
name=cpu               # bench/results/<name>_cnn_<cnn>.*
nj=2                   # parallel jobs for data prep and the dump
cnn="frozen trained"   # the student CNN settings to bench (the first is the default setting)
while [ $# -gt 0 ]; do
    case "$1" in
        --updates|--curve_points|--name|--nj|--cnn) declare "${1#--}=$2"; shift 2 ;;
        *) echo "unknown option $1 (options: --updates --curve_points --name --nj --cnn)" >&2; exit 2 ;;
    esac
done
for c in ${cnn}; do
    case "${c}" in trained|frozen) ;; *) echo "--cnn takes trained and/or frozen, got '${c}'" >&2; exit 2 ;; esac
done

recipe=${root}/egs2/demo/distill1
prep=${root}/bench/work/teacher_6x128  # the teacher and its dump, shared by every setting
teacher=${prep}/exp/teacher/model.pth
conf=${root}/bench/conf/distill_6x64_from_6x128.yaml
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run_cpu.sh) $*" >&2; }

start=$(date +%s)
log "the demo corpus, the 6 x 128 teacher and its dump (exp and dump under ${prep})"
bench/prepare_teacher.sh --nj "${nj}"
. "${root}/tools/activate_python.sh"
log "prepared in $(( $(date +%s) - start)) s"

for c in ${cnn}; do
    frozen=false; [ "${c}" = frozen ] && frozen=true
    run=${name}_cnn_${c}
    t0=$(date +%s)
    log "${run}: ten training runs and two more of none, ${updates} updates each (bench/work/${run}/)"
    python bench/stacking_speed.py --base_config "${conf}" --data_dir "${recipe}/data" \
        --dump_dir "${prep}/dump" --teacher "${teacher}" --updates "${updates}" \
        --curve_points "${curve_points}" --frozen_teacher_cnn "${frozen}" --name "${run}"
    t1=$(date +%s)
    log "${run}: layer similarity of the dumped-target students"
    students=()
    for d in "bench/work/${run}"/dump_*; do [[ ${d} == *_none_again ]] || students+=("${d}"); done
    python bench/layer_similarity.py --runs "${students[@]}" --teacher "${teacher}" \
        --data_dir "${recipe}/data/dev" --name "${run}"
    t2=$(date +%s)
    log "${run}: step profile, dumped and online"
    python bench/step_profile.py --config "${conf}" --data_dir "${recipe}/data/train" \
        --dump_dir "${prep}/dump/train" --teacher "${teacher}" --frozen_teacher_cnn "${frozen}" \
        --name "${run}"
    log "${run}: $((t1 - t0)) s training, $((t2 - t1)) s similarity, $(( $(date +%s) - t2)) s profile"
done
log "all done in $(( $(date +%s) - start)) s"
