#!/usr/bin/env bash
# The bench's default setting, end to end from a fresh clone, in one command (about 40 minutes
# on a 2-core CPU; README "Results" quotes its output):
#   1. the demo recipe's stages 0-2 (egs2/demo/distill1): the espeak-ng corpus, a 6 x 128
#      HuBERT-style teacher pretrained on it (conf/teacher_hubert_6x128.yaml), its dumped
#      targets for the student of conf/distill_6x64_from_6x128.yaml;
#   2. stacking_speed.py: none, interleaved EQL / PROP-1, gradual EQL and MIDAS EQL, each with
#      dumped targets and with the online teacher, --updates per run;
#   3. layer_similarity.py: teacher-student CKA heatmaps of the five dumped-target students.
# Writes bench/results/<name>.{json,png} and <name>_similarity*.{json,png}.
# A rerun reuses the corpus, the teacher and the dump; the training runs start over.
#   bench/run_cpu.sh [--updates N] [--curve_points N] [--name NAME] [--nj N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

updates=300        # updates per training run (the demo recipe's distillation budget)
curve_points=6     # validation passes per run
name=cpu_default   # bench/results/<name>.*
nj=2               # parallel jobs for data prep and the dump
while [ $# -gt 0 ]; do
    case "$1" in
        --updates|--curve_points|--name|--nj) declare "${1#--}=$2"; shift 2 ;;
        *) echo "unknown option $1 (options: --updates --curve_points --name --nj)" >&2; exit 2 ;;
    esac
done

recipe=${root}/egs2/demo/distill1
prep=${root}/bench/work/${name}_teacher     # teacher and dump of this setting
conf=${root}/bench/conf/distill_6x64_from_6x128.yaml
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run_cpu.sh) $*" >&2; }

start=$(date +%s)
log "1/3 the demo corpus, the 6 x 128 teacher and its dump (exp and dump under ${prep})"
"${recipe}/run.sh" --stop_stage 2 --nj "${nj}" \
    --teacher_config "${root}/bench/conf/teacher_hubert_6x128.yaml" --distill_config "${conf}" \
    --expdir "${prep}/exp" --dumpdir "${prep}/dump"
. "${root}/tools/activate_python.sh"
prepared=$(date +%s)

log "2/3 ten training runs of ${updates} updates (bench/work/${name}/)"
python bench/stacking_speed.py --base_config "${conf}" --data_dir "${recipe}/data" \
    --dump_dir "${prep}/dump" --teacher "${prep}/exp/teacher/model.pth" \
    --updates "${updates}" --curve_points "${curve_points}" --name "${name}"
trained=$(date +%s)

log "3/3 layer similarity of the dumped-target students"
python bench/layer_similarity.py --runs "bench/work/${name}"/dump_* \
    --teacher "${prep}/exp/teacher/model.pth" --data_dir "${recipe}/data/dev" --name "${name}"
done_at=$(date +%s)
log "took $((prepared - start)) s to prepare, $((trained - prepared)) s to train, $((done_at - trained)) s for similarity"
