#!/usr/bin/env bash
# Stage driver shared by every distill1 recipe (egs2/<corpus>/distill1/run.sh calls it).
#
#   0 teacher pretraining   only without --teacher: a small HuBERT-style teacher trained on
#                           ${train_set} by ESPnet's SSL task (--teacher_config), then probed
#   1 data prep            local/data.sh -> Kaldi-style dirs in ${datadir}/
#   2 teacher feature dump  chosen teacher hidden states -> fp16 .npy + .scp in ${dumpdir}/
#   3 staged distillation   grow the student by the stacking plan (DistillTask)
#   4 export student        ESPnet SSL-task model (stock espnet_ssl frontend), and the random
#                           student of the same shape (downstream reference)
#   5 downstream ASR        token list, collect stats, SUPERB-style ASR training on the student
#   6 decoding              CTC decoding of ${test_sets}
#   7 scoring               WER/CER in Python -> RESULTS.md
#
# Every stage is plain Python under espnet2_stacking.bin; this file only strings them together.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*" >&2; }

# ---- options (each --name value overrides the default below) ---------------
stage=0                 # first stage to run
stop_stage=7            # last stage to run
ngpu=0                  # GPUs for the teacher dump, distillation and ASR (0: CPU)
nj=4                    # parallel jobs for data prep, dump and decoding
python=python3          # interpreter (tools/venv's after activate_python.sh)
datadir=data            # Kaldi-style data dirs
dumpdir=dump            # teacher features
expdir=exp              # everything trained
train_set=train         # data dir names under ${datadir}
valid_set=dev
test_sets="test"        # space separated
local_data_opts=""      # passed to local/data.sh
teacher=""              # teacher spec: fairseq .pt, HF dir, ESPnet SSL .pth, random:...
teacher_config=""       # stage 0 (no --teacher): YAML of the teacher to pretrain
teacher_args=""         # extra options for pretrain_teacher
teacher_dtype=float32   # float32|bfloat16|float16 for running the teacher
teacher_mode=dump       # dump: read stage-2 features; online: run the teacher every step
distill_config=""       # YAML for stage 3
distill_args=""         # extra options for distill_train
asr_config=""           # YAML for stage 5
asr_args=""             # extra options for asr_train
inference_args=""       # extra options for asr_inference

# ---- end options
# shellcheck source=scripts/parse_options.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/parse_options.sh"

# Without --teacher, stage 0's output is the teacher of every later stage.
teacher_dir="${expdir}/teacher"
pretrained_teacher=false
if [ -z "${teacher}" ] && [ -n "${teacher_config}" ]; then
    teacher="${teacher_dir}/model.pth"
    pretrained_teacher=true
fi

stage_names=( "teacher pretraining" "data prep" "teacher feature dump" "staged distillation" "export student" \
              "downstream ASR training" "decoding" "scoring" )
timing_log="${expdir}/stage_times.tsv"
mkdir -p "${expdir}"

run_stage() {  # run_stage N function: runs it when N is within [stage, stop_stage], timed
    local n=$1 fn=$2 start
    if [ "${stage}" -le "${n}" ] && [ "${stop_stage}" -ge "${n}" ]; then
        log "Stage ${n}: ${stage_names[$n]}"
        start=$(date +%s)
        "${fn}"
        local secs=$(( $(date +%s) - start ))
        printf '%s\t%s\t%s\n' "${n}" "${stage_names[$n]}" "${secs}" >> "${timing_log}"
        log "Stage ${n} (${stage_names[$n]}) took ${secs} s"
    fi
}

not_implemented() {
    log "Stage $1 (${stage_names[$1]}): not implemented yet in espnet2_stacking. Nothing was run."
    exit 3
}

data_prepared=false
stage_data_prep() {
    if ${data_prepared}; then log "data prepared by stage 0 in this run"; return; fi
    [ -x local/data.sh ] || { log "local/data.sh is missing or not executable"; exit 1; }
    # shellcheck disable=SC2086
    local/data.sh --datadir "${datadir}" --nj "${nj}" ${local_data_opts}
    data_prepared=true
}

stage_teacher() {
    if ! ${pretrained_teacher}; then
        log "--teacher ${teacher:-(none)} given or no --teacher_config: nothing to pretrain"
        return
    fi
    [ -f "${teacher_config}" ] || { log "--teacher_config '${teacher_config}' not found"; exit 2; }
    # The teacher learns from the recipe's own training data: prepare it first.
    stage_data_prep
    local extra=() dset probe_set
    for dset in ${test_sets}; do extra+=("${datadir}/${dset}"); done
    # --resume: a rerun skips finished labels and stats and continues ESPnet's training.
    # shellcheck disable=SC2086
    ${python} -m espnet2_stacking.bin.pretrain_teacher --config "${teacher_config}" \
        --data_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --extra_dirs "${extra[@]}" --out_dir "${teacher_dir}" --nj "${nj}" --resume ${teacher_args}
    # Evidence that it learned something layer-specific: linear probes and layer CKA against
    # a random init of the same config, on held-out speakers (the first test set).
    probe_set=${test_sets%% *}
    ${python} -m espnet2_stacking.bin.probe_teacher --teacher "${teacher}" \
        --data_dir "${datadir}/${probe_set}" --labels "${teacher_dir}/labels/${probe_set}/text" \
        --out_dir "${teacher_dir}/probe"
}
require_teacher() {
    [ -n "${teacher}" ] || { log "--teacher is required (a fairseq .pt, HF dir, ESPnet SSL .pth or random:...)"; exit 2; }
}
require_config() {
    [ -f "${distill_config}" ] || { log "--distill_config '${distill_config}' not found"; exit 2; }
}
distill_tag() { local name; name=$(basename "${distill_config}" .yaml); echo "${name#distill_}"; }
target_layers() {  # the teacher states the distillation config supervises, space separated
    ${python} -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1]))["target_layers"]; print(" ".join(str(x) for x in (v.split(",") if isinstance(v, str) else v)))' "${distill_config}"
}

stage_dump() {
    if [ "${teacher_mode}" = online ]; then
        log "teacher_mode=online: the teacher runs inside training; nothing to dump"
        return
    fi
    require_teacher; require_config
    local dset
    for dset in "${train_set}" "${valid_set}"; do
        ${python} -m espnet2_stacking.bin.dump_teacher_feats --data_dir "${datadir}/${dset}" \
            --out_dir "${dumpdir}/${dset}" --teacher "${teacher}" --dtype "${teacher_dtype}" \
            --distill_config "${distill_config}" --nj "${nj}" --ngpu "${ngpu}"
    done
}

stage_distill() {
    require_config
    local opts=() t dset
    case "${teacher_mode}" in
        online) require_teacher; opts+=(--teacher "${teacher}" --teacher_dtype "${teacher_dtype}") ;;
        dump)
            for t in $(target_layers); do
                for dset in train valid; do
                    local d=${train_set}; [ "${dset}" = valid ] && d=${valid_set}
                    [ -f "${dumpdir}/${d}/layer_${t}.scp" ] || { log "${dumpdir}/${d}/layer_${t}.scp missing: run stage 2 (or --teacher_mode online)"; exit 1; }
                    opts+=(--${dset}_data_path_and_name_and_type "${dumpdir}/${d}/layer_${t}.scp,target_${t},npy")
                done
            done ;;
        *) log "--teacher_mode must be dump or online, got '${teacher_mode}'"; exit 2 ;;
    esac
    [ "${ngpu}" -gt 1 ] && opts+=(--multiprocessing_distributed true)
    # shellcheck disable=SC2086
    ${python} -m espnet2_stacking.bin.distill_train --config "${distill_config}" \
        --output_dir "${expdir}/distill_$(distill_tag)" --ngpu "${ngpu}" --resume true \
        --train_data_path_and_name_and_type "${datadir}/${train_set}/wav.scp,speech,sound" \
        --train_shape_file "${datadir}/${train_set}/utt2num_samples" \
        --valid_data_path_and_name_and_type "${datadir}/${valid_set}/wav.scp,speech,sound" \
        --valid_shape_file "${datadir}/${valid_set}/utt2num_samples" \
        "${opts[@]}" ${distill_args}
}

stage_export() {
    require_config
    local tag; tag=$(distill_tag)
    ${python} -m espnet2_stacking.bin.export_student --distill_dir "${expdir}/distill_${tag}" \
        --out_dir "${expdir}/student_${tag}"
    # The same shape untrained: the downstream reference the distilled student must beat.
    ${python} -m espnet2_stacking.bin.export_student --distill_dir "${expdir}/distill_${tag}" \
        --out_dir "${expdir}/student_${tag}_random" --random_init
}
stage_asr_train() { not_implemented 5; }
stage_decode() { not_implemented 6; }
stage_score() { not_implemented 7; }

run_stage 0 stage_teacher
run_stage 1 stage_data_prep
run_stage 2 stage_dump
run_stage 3 stage_distill
run_stage 4 stage_export
run_stage 5 stage_asr_train
run_stage 6 stage_decode
run_stage 7 stage_score
log "Finished stages ${stage}-${stop_stage}; times in ${timing_log}"
