#!/usr/bin/env bash
# Stage driver shared by every distill1 recipe (egs2/<corpus>/distill1/run.sh calls it).
#
#   0 teacher pretraining   only without --teacher: a small HuBERT-style teacher trained on
#                           ${train_set} by ESPnet's SSL task (--teacher_config), then probed
#   1 data prep            local/data.sh -> Kaldi-style dirs in ${datadir}/
#   2 teacher feature dump  chosen teacher hidden states -> sharded targets in ${dumpdir}/ (codec
#                           fp16, int8 or pq: --dump_args "--codec pq"), --nj jobs
#   3 staged distillation   grow the student by the config's stacking_conf (DistillTask); its
#                           student_cnn says whether the student's CNN is its own or the teacher's
#   4 export student        ESPnet SSL-task model (espnet student: stock espnet_ssl frontend;
#                           hubert student: also HF, torchaudio, ESPnet ASR encoder), and the
#                           random student of the same shape (downstream reference)
#   5 downstream training   SUPERB-style heads on each frozen upstream (--upstreams: student,
#                           teacher, random student, FBANK) for each of --downstream_tasks:
#                           asr (characters/BPE, CTC), pr (phones of ${phone_text}, CTC), sid
#                           (speakers of ${sid_train_set}): token lists, input checks, collect
#                           stats, training
#   6 decoding              CTC decoding of ${test_sets} (asr, pr); classification of
#                           ${sid_test_sets} (sid)
#   7 scoring               WER/CER, PER, accuracy in Python -> RESULTS.md (a table per task
#                           and a summary, with training and decoding times)
#
# Every stage is plain Python under espnet2_stacking.bin; this file only strings them together.
# Parallel jobs (dump, downstream collect stats and trainings, decoding) run through ESPnet's espnet3.parallel, here or
# on the site's scheduler (--parallel_config); several nodes train through espnet2.bin.launch.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*" >&2; }

# ---- options (each --name value overrides the default below) ---------------
stage=0                 # first stage to run
stop_stage=7            # last stage to run
ngpu=0                  # GPUs for the teacher dump, distillation and ASR (0: CPU)
nj=4                    # parallel jobs for data prep, dump and decoding; the torch threads of
                        #   stage 0's teacher training, which runs alone
parallel_config=conf/parallel.yaml  # the site's file: where jobs run (cpu/gpu classes: local,
                        #   Slurm, SGE, PBS, SSH...) and how stages 3 and 5 span nodes (launch:);
                        #   missing: everything on this machine
num_nodes=1             # nodes for distillation and ASR training (espnet2.bin.launch; --ngpu
                        #   is per node; a site's launch.hosts sets the nodes itself)
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
teacher_args=""         # extra options for pretrain_teacher (each iteration's)
teacher_iterations=1    # stage 0's HuBERT iterations: the first learns k-means labels of MFCCs,
                        #   each next one (from scratch, the same config and teacher_args) those
                        #   of its predecessor's middle state, in ${expdir}/teacher_iter<i>;
                        #   the last is ${expdir}/teacher
teacher_dtype=float32   # float32|bfloat16|float16 for running the teacher
teacher_mode=dump       # dump: read stage-2 features; online: run the teacher every step
dump_args=""            # extra options for dump_teacher_feats (e.g. "--normalize layer_norm")
distill_config=""       # YAML for stage 3; stage 2 dumps its stacking_conf.targets (and, with
                        # student_cnn: teacher_frozen, the teacher's CNN output)
distill_args=""         # extra options for distill_train
epoch_from_data=false   # true: an epoch is one pass over ${train_set} (num_iters_per_epoch =
                        #   ceil(utterances / the config's batch_size)); distill_args still win
downstream_tasks=asr    # tasks of stages 5-7, space separated: asr (words: WER/CER), pr (phones:
                        #   PER), sid (speaker ID: accuracy); each -> ${expdir}/<task>_<upstream>
upstreams="student teacher student_random"  # upstreams of every task, each -> <task>_<name>:
                        #   student: stage 4's export; teacher: ${teacher}; student_random: its
                        #   random-init export (skipped with a warning when stage 4 wrote none);
                        #   fbank: log-mel filterbanks (SUPERB's FBANK baseline); NAME=SPEC: any
                        #   other upstream spec (e.g. another run's export_student model.pth)
asr_upstreams=""        # the old name of --upstreams (still accepted)
downstream_feats=online # online: every head runs its frozen upstream on every step; dump: stage
                        #   5 first runs each upstream once over every data dir the tasks use
                        #   and keeps all its hidden states (${dumpdir}/upstream_states/<name>/
                        #   <set>, float16), which the heads and stage 6 read (fbank stays
                        #   online; README "Downstream tasks": time saved, disk used)
asr_config=""           # YAML for task asr
asr_args=""             # extra options for asr_train (task asr)
asr_nj=1                # downstream trainings (and collect-stats passes) run at once, every
                        # task's (CPU: threads are split between them; on GPUs keep 1)
pr_config=""            # YAML for task pr (ESPnet's ASR task on phones, CTC)
pr_args=""              # extra options for asr_train (task pr)
phone_text=text_phn     # task pr's transcripts in every data dir: "<utt> <phone> <phone> ..."
pr_decode_model=valid.loss.ave.pth  # checkpoint of each PR run that stage 6 decodes with
sid_config=""           # YAML for task sid (ESPnet's classification task)
sid_args=""             # extra options for cls_train (task sid)
sid_train_set=sid_train # task sid's data dirs: the same speakers in train, dev and test
sid_valid_set=sid_dev
sid_test_sets=sid_test  # space separated
sid_decode_model=valid.acc.best.pth  # checkpoint of each SID run that stage 6 classifies with
sid_inference_args=""   # extra options for cls_inference
token_type=char         # ASR output units: char or bpe
nbpe=300                # SentencePiece vocabulary size (token_type=bpe)
asr_decode_model=valid.loss.ave.pth  # checkpoint of each ASR run that stage 6 decodes with
ctc_greedy=true         # at --decode_beam_size 1: SUPERB's greedy CTC decoding (the frames'
                        #   best tokens; ctc_greedy_inference); false: ESPnet's prefix search
decode_beam_size=1      # width of ESPnet's CTC prefix beam search (asr_inference) past 1
decode_batch_size=16    # utterances decoded at once (ESPnet's search: the same output as
                        #   one at a time, in less than half the time on the demo's PR test set)
decode_min_utts=50      # fewest utterances per decoding job: a job costs an interpreter
                        # start and a model load, more than decoding a few utterances
inference_args=""       # extra options for the decoding of tasks asr and pr (asr_inference,
                        #   or ctc_greedy_inference with --ctc_greedy true at beam 1)
results=RESULTS.md      # stage 7 writes every task's tables here

# ---- end options
# shellcheck source=scripts/parse_options.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/parse_options.sh"

if [ -n "${asr_upstreams}" ]; then
    log "--asr_upstreams is the old name of --upstreams (the upstreams of every downstream task): taken as --upstreams"
    upstreams=${asr_upstreams}
fi

[[ "${teacher_iterations}" =~ ^[1-9][0-9]*$ ]] || { log "--teacher_iterations must be a positive integer, got '${teacher_iterations}'"; exit 2; }
# Without --teacher, stage 0's output is the teacher of every later stage.
teacher_dir="${expdir}/teacher"
pretrained_teacher=false
if [ -z "${teacher}" ] && [ -n "${teacher_config}" ]; then
    teacher="${teacher_dir}/model.pth"
    pretrained_teacher=true
fi

stage_names=( "teacher pretraining" "data prep" "teacher feature dump" "staged distillation" "export student" \
              "downstream training" "decoding" "scoring" )
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

# ---- parallel jobs: queued in a list, run by ESPnet's parallel engine (espnet3.parallel, Dask)
# on this machine or on the site's scheduler (${parallel_config}), each logging to its own file
jobs_file=""
# per-file work of data prep and teacher labelling: on the config's cpu class too
parallel_opts=(); [ -f "${parallel_config}" ] && parallel_opts=(--parallel_config "${parallel_config}")
jobs_begin() { mkdir -p "${expdir}"; jobs_file=$(mktemp "${expdir}/.jobs.XXXXXX"); }
jobs_add() {  # jobs_add DESCRIPTION LOG_FILE COMMAND...
    printf '%s\t%s\t%s\n' "$1" "$2" "$(printf '%q ' "${@:3}")" >> "${jobs_file}"
}
jobs_run() {  # jobs_run CLASS MAX_AT_ONCE [GPUS]: run the queued jobs; stop the recipe if one
              # failed. GPUS: this machine's GPUs dealt one to a job (jobs that use one GPU)
    local rc=0 conf=()
    [ -f "${parallel_config}" ] && conf=(--parallel_config "${parallel_config}")
    ${python} -m espnet2_stacking.bin.run_jobs --jobs "${jobs_file}" --job_class "$1" \
        --max_jobs "$2" --ngpu "${3:-0}" "${conf[@]}" || rc=$?
    rm -f "${jobs_file}"
    [ "${rc}" -eq 0 ] || exit 1
}
job_class() { if [ "${ngpu}" -gt 0 ]; then echo gpu; else echo cpu; fi; }
parallel_value() {  # parallel_value KEY DEFAULT: a value of ${parallel_config} (a.b: nested)
    if [ -f "${parallel_config}" ]; then config_value "${parallel_config}" "$1" "$2"; else echo "$2"; fi
}
multi_node() { [ "${num_nodes}" -gt 1 ] || [ "$(parallel_value launch.hosts none)" != none ]; }
launch_train() {  # launch_train LOG_FILE COMMAND...: on several nodes through ESPnet's launcher
    local logf=$1 cmd hosts opts=(); shift
    cmd=$(parallel_value launch.cmd none); hosts=$(parallel_value launch.hosts none)
    opts=(--log "${logf}" --ngpu "${ngpu}" --init_file_prefix "${expdir}/.dist_init_"
          --envfile "$(parallel_value launch.envfile path.sh)")
    if [ "${hosts}" != none ]; then
        opts+=(--host "${hosts}")  # SSH: one process per host (and GPU)
    elif [ "${cmd}" != none ]; then
        opts+=(--cmd "${cmd}" --num_nodes "${num_nodes}")  # slurm.pl: srun; queue.pl: mpirun
    else
        log "--num_nodes ${num_nodes}: set launch.cmd (or launch.hosts) in ${parallel_config} (README: Running on a cluster)"
        exit 2
    fi
    log "launching on ${hosts/none/${num_nodes} nodes} x ${ngpu} GPU(s) through espnet2.bin.launch (log: ${logf})"
    mkdir -p "$(dirname "${logf}")"
    ${python} -m espnet2.bin.launch "${opts[@]}" -- "$@" \
        || { log "multi-node training failed; see ${logf}"; exit 1; }
}

data_prepared=false
stage_data_prep() {
    if ${data_prepared}; then log "data prepared by stage 0 in this run"; return; fi
    [ -x local/data.sh ] || { log "local/data.sh is missing or not executable"; exit 1; }
    local opts=()  # a local/data.sh that has the option gets the site's file (ours do)
    grep -q '^parallel_config=' local/data.sh && opts=("${parallel_opts[@]}")
    # shellcheck disable=SC2086
    local/data.sh --datadir "${datadir}" --nj "${nj}" "${opts[@]}" ${local_data_opts}
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
    local extra=() dset probe_set it out labels_from=() last_opts
    for dset in ${test_sets}; do extra+=("${datadir}/${dset}"); done
    # Then the evidence that it learned something layer-specific: linear probes and layer CKA
    # against a random init of the same config, on held-out speakers (the first test set).
    probe_set=${test_sets%% *}
    for ((it = 1; it <= teacher_iterations; it++)); do
        out=${teacher_dir}_iter${it} last_opts=()
        if [ "${it}" -eq "${teacher_iterations}" ]; then
            out=${teacher_dir}
            last_opts=(--extra_dirs "${extra[@]}" --probe_dir "${datadir}/${probe_set}")
        fi
        [ "${teacher_iterations}" -gt 1 ] && log "teacher iteration ${it} of ${teacher_iterations}: ${out}"
        # --resume: a rerun skips finished iterations, labels and stats and continues ESPnet's
        # training.
        # shellcheck disable=SC2086
        ${python} -m espnet2_stacking.bin.pretrain_teacher --config "${teacher_config}" \
            --data_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
            --out_dir "${out}" --nj "${nj}" --resume "${parallel_opts[@]}" \
            --num_threads "${nj}" "${labels_from[@]}" "${last_opts[@]}" ${teacher_args}
        labels_from=(--label_upstream "${out}/model.pth")
    done
}
require_teacher() {
    [ -n "${teacher}" ] || { log "--teacher is required (a fairseq .pt, HF dir, ESPnet SSL .pth or random:...)"; exit 2; }
}
require_config() {
    [ -f "${distill_config}" ] || { log "--distill_config '${distill_config}' not found"; exit 2; }
}
distill_tag() { local name; name=$(basename "${distill_config}" .yaml); echo "${name#distill_}"; }
config_value() {  # config_value FILE KEY DEFAULT: a value of a YAML file (KEY a.b: nested), as
                  # YAML writes it (true, false, none); DEFAULT where a key on the way is missing
    ${python} -c '
import sys, yaml
v = yaml.safe_load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    v = v.get(key, sys.argv[3]) if isinstance(v, dict) else sys.argv[3]
print("none" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$1" "$2" "$3"
}

stage_dump() {
    if [ "${teacher_mode}" = online ]; then
        log "teacher_mode=online: the teacher runs inside training; nothing to dump"
        return
    fi
    require_teacher; require_config
    local j sets=(--data_dir "${datadir}/${train_set}" "${datadir}/${valid_set}"
                  --out_dir "${dumpdir}/${train_set}" "${dumpdir}/${valid_set}")
    if [[ " ${dump_args} " =~ [[:space:]]--codec[[:space:]=]+(int8|pq)[[:space:]] ]]; then
        # the codec files first (trained on ${train_set}, used for both sets): one job, on a GPU
        # node with --ngpu; every dump job reads them
        jobs_begin
        # shellcheck disable=SC2086
        jobs_add "dump codecs" "${dumpdir}/logdir/codecs.log" \
            ${python} -m espnet2_stacking.bin.dump_teacher_feats "${sets[@]}" --teacher "${teacher}" \
            --dtype "${teacher_dtype}" --distill_config "${distill_config}" --codecs_only true \
            --ngpu "$(( ngpu > 0 ? 1 : 0 ))" ${dump_args}
        jobs_run "$(job_class)" 1 "${ngpu}"
    fi
    # ${nj} jobs, each its share of both sets' shards (the teacher loads once a job; on a GPU
    # node with --ngpu); then one process verifies both sets and writes their lists (dumping
    # whatever a job left undone)
    jobs_begin
    for j in $(seq "${nj}"); do
        # shellcheck disable=SC2086
        jobs_add "dump job ${j}/${nj}" "${dumpdir}/logdir/dump.${j}.log" \
            ${python} -m espnet2_stacking.bin.dump_teacher_feats "${sets[@]}" --teacher "${teacher}" \
            --dtype "${teacher_dtype}" --distill_config "${distill_config}" --job "${j}/${nj}" \
            --ngpu "$(( ngpu > 0 ? 1 : 0 ))" ${dump_args}
    done
    log "teacher dump: ${nj} job(s), logs in ${dumpdir}/logdir/dump.*.log"
    jobs_run "$(job_class)" "${nj}" "${ngpu}"
    # shellcheck disable=SC2086
    ${python} -m espnet2_stacking.bin.dump_teacher_feats \
        --data_dir "${datadir}/${train_set}" "${datadir}/${valid_set}" \
        --out_dir "${dumpdir}/${train_set}" "${dumpdir}/${valid_set}" --teacher "${teacher}" \
        --dtype "${teacher_dtype}" --distill_config "${distill_config}" --nj 1 --ngpu "${ngpu}" \
        ${dump_args}
}

stage_distill() {
    require_config
    local opts=() d
    # The config's student_cnn needs nothing here: the task takes the teacher of its CNN from
    # --teacher (online) or the dump's meta.json, and the dump's cnn.scp when it has one.
    case "${teacher_mode}" in
        online) require_teacher; opts+=(--teacher "${teacher}" --teacher_dtype "${teacher_dtype}") ;;
        dump)
            # the task reads each dump's meta.json and adds its layer lists (it names a layer
            # the config's stacking_conf.targets need and the dump lacks)
            for d in "${train_set}" "${valid_set}"; do
                [ -f "${dumpdir}/${d}/meta.json" ] || { log "${dumpdir}/${d}/meta.json missing: run stage 2 (or --teacher_mode online)"; exit 1; }
            done
            opts+=(--train_dump_dir "${dumpdir}/${train_set}" --valid_dump_dir "${dumpdir}/${valid_set}") ;;
        *) log "--teacher_mode must be dump or online, got '${teacher_mode}'"; exit 2 ;;
    esac
    [ "${ngpu}" -gt 1 ] && ! multi_node && opts+=(--multiprocessing_distributed true)
    if ${epoch_from_data}; then
        local utts batch_size
        utts=$(wc -l < "${datadir}/${train_set}/wav.scp")
        batch_size=$(config_value "${distill_config}" batch_size 0)
        [ "${batch_size}" -gt 0 ] 2>/dev/null || { log "--epoch_from_data true needs batch_size in ${distill_config}"; exit 2; }
        opts+=(--num_iters_per_epoch $(( (utts + batch_size - 1) / batch_size )))
        log "an epoch is one pass over ${utts} utterances: num_iters_per_epoch $(( (utts + batch_size - 1) / batch_size ))"
    fi
    local run=()  # one node: as it is; several: through ESPnet's launcher (it adds the ranks)
    multi_node && run=(launch_train "${expdir}/distill_$(distill_tag)/train.log")
    # shellcheck disable=SC2086
    "${run[@]}" ${python} -m espnet2_stacking.bin.distill_train --config "${distill_config}" \
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
    # ...and the same shape untrained: the downstream reference the distilled student must beat
    ${python} -m espnet2_stacking.bin.export_student --distill_dir "${expdir}/distill_${tag}" \
        --out_dir "${expdir}/student_${tag}" --random_out_dir "${expdir}/student_${tag}_random"
}

# ---- stages 5-7: SUPERB-style downstream tasks on each upstream ---------------------------
# A task trains one head per upstream in ${expdir}/<task>_<upstream>: asr and pr through
# ESPnet's ASR task (characters or BPE of text; phones of ${phone_text}), sid through ESPnet's
# classification task (speakers of ${sid_train_set}).
known_tasks="asr pr sid"
task_var() { local v="$1_$2"; echo "${!v}"; }  # task_var TASK NAME: the value of --TASK_NAME
check_tasks() {
    local task config
    [ -n "${downstream_tasks// /}" ] || { log "--downstream_tasks is empty (known: ${known_tasks})"; exit 2; }
    [[ "${downstream_feats}" == online || "${downstream_feats}" == dump ]] || { log "--downstream_feats must be online or dump, got '${downstream_feats}'"; exit 2; }
    for task in ${downstream_tasks}; do
        [[ " ${known_tasks} " == *" ${task} "* ]] || { log "unknown task '${task}' in --downstream_tasks '${downstream_tasks}' (known: ${known_tasks})"; exit 2; }
        config=$(task_var "${task}" config)
        [ -f "${config}" ] || { log "--${task}_config '${config}' not found (task ${task} of --downstream_tasks '${downstream_tasks}')"; exit 2; }
    done
}
token_dir() {  # token_dir [TASK]: where the task's token list goes
    case "${1:-asr}" in
        pr) echo "${datadir}/token_list/phn" ;;
        sid) echo "${datadir}/token_list/spk" ;;
        *) case "${token_type}" in
               char) echo "${datadir}/token_list/char" ;;
               bpe) echo "${datadir}/token_list/bpe_unigram${nbpe}" ;;
               *) log "--token_type must be char or bpe, got '${token_type}'"; exit 2 ;;
           esac ;;
    esac
}
token_opts() {  # token_opts [TASK]: the token options every training of the task gets
    local dir; dir=$(token_dir "${1:-asr}")
    case "${1:-asr}" in
        pr) echo "--token_type word --token_list ${dir}/tokens.txt" ;;
        sid) echo "--token_list ${dir}/tokens.txt" ;;
        *) echo "--token_type ${token_type} --token_list ${dir}/tokens.txt"
           [ "${token_type}" = bpe ] && echo "--bpemodel ${dir}/bpe.model" ;;
    esac
    return 0
}
task_train_sets() { if [ "$1" = sid ]; then echo "${sid_train_set} ${sid_valid_set}"; else echo "${train_set} ${valid_set}"; fi; }
task_test_sets() { if [ "$1" = sid ]; then echo "${sid_test_sets}"; else echo "${test_sets}"; fi; }
task_labels() {  # task_labels TASK DATA_DIR: the labels as ESPnet data (path,name,type)
    case "$1" in
        asr) echo "$2/text,text,text" ;;
        pr) echo "$2/${phone_text},text,text" ;;
        sid) echo "$2/utt2spk,label,text" ;;
    esac
}
task_module() {  # task_module TASK train|inference
    if [ "$1" = sid ]; then echo "espnet2_stacking.bin.cls_$2"; else echo "espnet2_stacking.bin.asr_$2"; fi
}
task_shapes() { if [ "$1" = sid ]; then echo speech; else echo "speech text"; fi; }
builtin_upstreams="student teacher student_random fbank"
upstream_spec() {  # name -> upstream spec on stdout; nothing: skip this upstream (warned)
    local name=$1 student_dir
    student_dir="${expdir}/student_$(distill_tag)"
    case "${name}" in
        student)
            [ -f "${student_dir}/model.pth" ] || { log "${student_dir}/model.pth missing: run stage 4"; exit 1; }
            echo "${student_dir}/model.pth" ;;
        student_random)
            if [ -f "${student_dir}_random/model.pth" ]; then
                echo "${student_dir}_random/model.pth"
            else
                log "WARNING: ${student_dir}_random/model.pth missing (stage 4 wrote no random-init student): skipping upstream student_random"
            fi ;;
        teacher) require_teacher; echo "${teacher}" ;;
        fbank) echo fbank ;;
        *) log "unknown upstream '${name}' in --upstreams (known: ${builtin_upstreams}, or NAME=SPEC)"; exit 2 ;;
    esac
}
up_names=(); up_specs=()
resolve_upstreams() {  # fills up_names and up_specs from --upstreams
    local name spec
    up_names=(); up_specs=()
    for name in ${upstreams}; do
        if [[ "${name}" == *=* ]]; then  # NAME=SPEC: an upstream of the user's, under its name
            spec=${name#*=}; name=${name%%=*}
            [[ "${name}" =~ ^[A-Za-z0-9_.-]+$ ]] || { log "--upstreams: '${name}=${spec}': the name must be letters, digits, _ . or - (it names ${expdir}/<task>_${name})"; exit 2; }
            [[ " ${builtin_upstreams} " != *" ${name} "* ]] || { log "--upstreams: '${name}=${spec}': ${name} is a built-in upstream's name; choose another"; exit 2; }
            [[ "${spec}" == random:* || "${spec}" == fbank* || -e "${spec}" ]] || { log "--upstreams: '${name}=${spec}': ${spec} not found"; exit 1; }
        else
            spec=$(upstream_spec "${name}")
        fi
        [ -n "${spec}" ] || continue
        [[ " ${up_names[*]} " != *" ${name} "* ]] || { log "--upstreams: '${name}' given twice"; exit 2; }
        up_names+=("${name}"); up_specs+=("${spec}")
    done
    [ ${#up_names[@]} -gt 0 ] || { log "no upstream to train on (--upstreams '${upstreams}')"; exit 1; }
}

# Wall times: a job adds its own seconds to a file when it succeeds (written whole, then
# renamed), so times survive the job pool, a cluster's scheduler and resumed trainings.
add_seconds_awk='BEGIN { s = 0 } NF { s = $1 } END { printf "%.1f\n", s + t1 - t0 }'
jobs_add_timed() {  # jobs_add_timed DESCRIPTION LOG_FILE SECONDS_FILE COMMAND...: run_jobs times it
    jobs_add_after - "$@"
}
jobs_add_after() {  # jobs_add_after LOGS DESCRIPTION LOG_FILE SECONDS_FILE COMMAND...: a job that
                    # starts once the jobs writing LOGS (comma-separated; -: none) have
                    # succeeded; SECONDS_FILE - for none
    if [ "$1" = - ]; then
        printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$(printf '%q ' "${@:5}")" "$4" >> "${jobs_file}"
    else
        printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$(printf '%q ' "${@:5}")" "$4" "$1" >> "${jobs_file}"
    fi
}
timed() {  # timed SECONDS_FILE COMMAND...: the same here (COMMAND may be a function)
    local f=$1 t0; shift
    t0=$(date +%s.%N)
    "$@"
    { cat "${f}" 2>/dev/null || true; } | awk -v t0="${t0}" -v t1="$(date +%s.%N)" "${add_seconds_awk}" > "${f}.tmp"
    mv "${f}.tmp" "${f}"
}

make_token_list() {  # make_token_list TASK TEXT UNITS: ESPnet's token list of TEXT's units
    local task=$1 text=$2 units=$3 dir opts=()
    dir=$(token_dir "${task}")
    if [ -s "${dir}/tokens.txt" ]; then
        log "token list ${dir}/tokens.txt exists: kept"
        return
    fi
    mkdir -p "${dir}"
    if [ "${units}" = bpe ]; then
        ${python} -m espnet2_stacking.bin.spm_train --text "${text}" --vocab_size "${nbpe}" \
            --model_prefix "${dir}/bpe"
        opts+=(--bpemodel "${dir}/bpe.model")
    fi
    # ESPnet's layout: <blank> first, <unk> second, units by frequency, <sos/eos> last
    # (the char tokenizer writes spaces as <space>).
    ${python} -m espnet2.bin.tokenize_text --token_type "${units}" "${opts[@]}" \
        --input "${text}" --output "${dir}/tokens.txt.tmp" --field 2- --cleaner none \
        --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
    mv "${dir}/tokens.txt.tmp" "${dir}/tokens.txt"
    log "token list: ${dir}/tokens.txt ($(wc -l < "${dir}/tokens.txt") units)"
}
check_texts() {  # characters the token list lacks become <unk>: count them, fail on many
    [ "${token_type}" = char ] || return 0
    local dset texts=()
    for dset in ${valid_set} ${test_sets}; do texts+=("${datadir}/${dset}/text"); done
    ${python} -m espnet2_stacking.bin.check_text --token_list "$(token_dir asr)/tokens.txt" "${texts[@]}"
}
prepare_labels() {  # prepare_labels TASK: the task's token list, and its inputs checked
    local task=$1 dset texts=() dirs=() text
    case "${task}" in
        asr)
            text="${datadir}/${train_set}/text"
            [ -f "${text}" ] || { log "${text} missing: run stage 1"; exit 1; }
            make_token_list asr "${text}" "${token_type}"
            check_texts ;;
        pr)
            for dset in ${train_set} ${valid_set} ${test_sets}; do
                text="${datadir}/${dset}/${phone_text}"
                [ -f "${text}" ] || { log "${text} missing: task pr needs phone transcripts (the demo's stage 1 writes them; LibriSpeech: local/data.sh --lexicon FILE, see README)"; exit 1; }
                texts+=("${text}")
            done
            make_token_list pr "${datadir}/${train_set}/${phone_text}" word
            # phones the list lacks (they would become <unk>) and utterances without phones,
            # per file, before any training
            ${python} -m espnet2_stacking.bin.check_text --unit word --utt_list wav.scp \
                --token_list "$(token_dir pr)/tokens.txt" "${texts[@]}" ;;
        sid)
            for dset in ${sid_train_set} ${sid_valid_set} ${sid_test_sets}; do
                [ -f "${datadir}/${dset}/wav.scp" ] || { log "${datadir}/${dset}/wav.scp missing: task sid needs ${sid_train_set}, ${sid_valid_set} and ${sid_test_sets} (the same speakers in each). The demo's stage 1 writes them unless its corpus is too small for every voice to reach each split (its log says so); other corpora have none yet. Drop sid from --downstream_tasks or prepare them."; exit 1; }
                dirs+=("${datadir}/${dset}")
            done
            # every speaker of dev/test must be a class of train; any speaker missing from a
            # split is reported
            ${python} -m espnet2_stacking.bin.check_speakers "${dirs[@]}"
            text=$(token_dir sid)/tokens.txt
            if [ -s "${text}" ]; then
                log "speaker list ${text} exists: kept"
            else
                # ESPnet's classification task: the classes, then <unk> last
                mkdir -p "$(dirname "${text}")"
                { awk '{ print $2 }' "${datadir}/${sid_train_set}/utt2spk" | LC_ALL=C sort -u; echo "<unk>"; } > "${text}.tmp"
                mv "${text}.tmp" "${text}"
                log "speaker list: ${text} ($(( $(wc -l < "${text}") - 1 )) speakers)"
            fi ;;
    esac
}

stats_per_upstream() {  # stats_per_upstream TASK -> true: each upstream needs its own pass
    # Only global_mvn's feature statistics depend on the upstream; the shapes (of the waveform
    # and the labels) do not: one shared pass per task otherwise. (model_conf.
    # extract_feats_in_collect_stats: false also keeps the upstream from running in it.)
    if [ "$(config_value "$(task_var "$1" config)" normalize utterance_mvn)" = global_mvn ]; then
        echo true
    else
        echo false
    fi
}
stats_dir() {  # stats_dir TASK UPSTREAM_NAME
    if [ "$(stats_per_upstream "$1")" = true ]; then
        echo "${expdir}/$1_$2/stats"
    else
        echo "${expdir}/$1_stats_$(basename "$(token_dir "$1")")"
    fi
}
stats_upstream() {  # stats_upstream TASK SPEC: the upstream of the task's collect-stats pass
    # A shared pass records shapes of the waveforms and labels only, yet ESPnet's
    # classification task runs the frontend over every utterance in it: fbank is the cheapest
    if [ "$(stats_per_upstream "$1")" = true ]; then echo "$2"; else echo fbank; fi
}
states_dumped() {  # states_dumped SPEC: true when the heads of this upstream read dumped states
    [ "${downstream_feats}" = dump ] && [[ "$1" != fbank* ]]
}
states_dir() { echo "${dumpdir}/upstream_states/$1/$2"; }  # states_dir NAME SET
speech_data() {  # speech_data NAME SPEC SET: a head's speech input as ESPnet data (path,name,type)
    if states_dumped "$2"; then
        echo "$(states_dir "$1" "$3")/feats.scp,speech,npy"
    else
        echo "${datadir}/$3/wav.scp,speech,sound"
    fi
}
frontend_opts() {  # frontend_opts SPEC: the frontend options of a head on this upstream
    echo "--frontend_conf upstream=$1"
    if states_dumped "$1"; then echo "--frontend_conf input=states"; fi
}
downstream_sets() {  # every data dir the tasks train, validate or test on, once each
    local task dset seen=" "
    for task in ${downstream_tasks}; do
        for dset in $(task_train_sets "${task}") $(task_test_sets "${task}"); do
            [[ "${seen}" == *" ${dset} "* ]] && continue
            seen+="${dset} "; echo "${dset}"
        done
    done
}
upstream_setting() {  # upstream_setting KEY DEFAULT: a frontend_conf value every task's config
                      # must share (the dumped states serve them all)
    local task values=()
    for task in ${downstream_tasks}; do
        values+=("$(config_value "$(task_var "${task}" config)" "frontend_conf.$1" "$2")")
    done
    if [ "$(printf '%s\n' "${values[@]}" | sort -u | wc -l)" -ne 1 ]; then
        log "--downstream_feats dump: the tasks' configs disagree on frontend_conf.$1 (${values[*]} for ${downstream_tasks}); one dump serves every task: make them equal or use --downstream_feats online"
        exit 2
    fi
    echo "${values[0]}"
}
add_upstream_dumps() {  # add_upstream_dumps DTYPE NORMALIZE: queue each upstream's states dump
                        # (its log into the caller's dump_log, by upstream name)
    local i dset dirs outs
    for i in "${!up_names[@]}"; do
        states_dumped "${up_specs[$i]}" || continue
        dirs=(); outs=()
        for dset in $(downstream_sets); do
            dirs+=("${datadir}/${dset}"); outs+=("$(states_dir "${up_names[$i]}" "${dset}")")
        done
        mkdir -p "${dumpdir}/upstream_states/${up_names[$i]}"
        jobs_add_timed "hidden states of '${up_names[$i]}' (upstream ${up_specs[$i]})" \
            "${dumpdir}/upstream_states/${up_names[$i]}/dump.log" "${dumpdir}/upstream_states/${up_names[$i]}/dump_seconds" \
            ${python} -m espnet2_stacking.bin.dump_upstream_states --upstream "${up_specs[$i]}" \
            --upstream_dtype "$1" --upstream_normalize "$2" --ngpu "$(( ngpu > 0 ? 1 : 0 ))" \
            --data_dir "${dirs[@]}" --out_dir "${outs[@]}"
        dump_log[${up_names[$i]}]="${dumpdir}/upstream_states/${up_names[$i]}/dump.log"
        queued=$(( queued + 1 ))
    done
}
task_data() {  # task_data TASK [NAME SPEC]: the --{train,valid}_data_path_and_name_and_type
               # options (the speech of upstream NAME; without it, the waveforms)
    local tag d sets
    read -r -a sets <<< "$(task_train_sets "$1")"
    for tag in train valid; do
        d=${sets[0]}; [ "${tag}" = valid ] && d=${sets[1]}
        if [ $# -ge 3 ]; then
            echo "--${tag}_data_path_and_name_and_type $(speech_data "$2" "$3" "${d}")"
        else
            echo "--${tag}_data_path_and_name_and_type ${datadir}/${d}/wav.scp,speech,sound"
        fi
        echo "--${tag}_data_path_and_name_and_type $(task_labels "$1" "${datadir}/${d}")"
    done
}

upstream_identity() {  # upstream_identity SPEC: the spec, and the sha256 of its file if it is one
    if [ -f "$1" ]; then echo "$1 sha256:$(sha256sum "$1" | cut -d' ' -f1)"; else echo "$1"; fi
}
head_run_dir() {  # head_run_dir RUN_DIR SPEC: a head's run dir, ready for --resume true. A head
                  # trained on another upstream (a new export, another teacher) is moved to
                  # RUN_DIR.prev: ESPnet would resume its checkpoints on the new states.
    local run_dir=$1 id old
    id=$(upstream_identity "$2")
    if compgen -G "${run_dir}/*.pth" > /dev/null; then
        if [ ! -f "${run_dir}/upstream_id" ]; then
            log "WARNING: ${run_dir} has checkpoints but no upstream_id (an older version wrote it): resumed as it is, on ${id}; remove the dir if it was trained on another upstream"
        elif [ "$(cat "${run_dir}/upstream_id")" != "${id}" ]; then
            old=$(cat "${run_dir}/upstream_id")
            rm -rf "${run_dir}.prev"; mv "${run_dir}" "${run_dir}.prev"
            log "${run_dir} was trained on upstream ${old}, now ${id}: moved to ${run_dir}.prev, trained again"
        fi
    fi
    mkdir -p "${run_dir}"
    echo "${id}" > "${run_dir}/upstream_id.tmp"; mv "${run_dir}/upstream_id.tmp" "${run_dir}/upstream_id"
}

stage_downstream_train() {
    check_tasks
    if [ "${asr_nj}" -gt 1 ] && [ "${ngpu}" -gt 0 ]; then
        log "--asr_nj ${asr_nj} with --ngpu ${ngpu}: parallel trainings would share the GPUs; use --asr_nj 1"
        exit 2
    fi
    resolve_upstreams
    local task i stats run_dir opts=() dist_opts=() sets shape done_stats=() run config
    local dump_dtype dump_norm
    [ "${ngpu}" -gt 1 ] && ! multi_node && dist_opts+=(--multiprocessing_distributed true)
    if [ "${downstream_feats}" = dump ]; then  # before any work: one dump serves every task
        dump_dtype=$(upstream_setting upstream_dtype float32)
        dump_norm=$(upstream_setting upstream_normalize none)
    fi
    # the tasks' token lists and input checks, side by side (each is a few Python starts); a
    # failed one stops the stage with its own exit status once all have ended
    local pids=() pid rc=0 status
    for task in ${downstream_tasks}; do prepare_labels "${task}" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "${pid}" || { status=$?; [ "${rc}" -ne 0 ] || rc=${status}; }; done
    [ "${rc}" -eq 0 ] || exit "${rc}"
    # One pool, --asr_nj at once: the upstreams' state dumps, ESPnet's collect-stats passes
    # (shapes, and feature statistics for global_mvn), which need no dump, and the trainings,
    # each waiting only for its own upstream's dump and its task's statistics (FBANK's start
    # while the dumps run). On GPUs the dumps run first, each dealt a GPU; on several nodes the
    # trainings run after the pool, one after the other, each on all of them.
    local queued=0 waits
    declare -A dump_log=() stats_ready=()
    jobs_begin
    [ "${downstream_feats}" = dump ] && add_upstream_dumps "${dump_dtype}" "${dump_norm}"
    if [ "${ngpu}" -gt 0 ] && [ "${queued}" -gt 0 ]; then
        jobs_run "$(job_class)" "${asr_nj}" "${ngpu}"; queued=0; dump_log=(); jobs_begin
    fi
    for task in ${downstream_tasks}; do
        read -r -a sets <<< "$(task_train_sets "${task}")"
        for i in "${!up_names[@]}"; do
            stats=$(stats_dir "${task}" "${up_names[$i]}")
            [[ " ${done_stats[*]} " == *" ${stats} "* ]] && continue  # shared: once
            done_stats+=("${stats}")
            if [ -s "${stats}/valid/speech_shape" ]; then
                log "${stats} exists: collect-stats skipped"
                continue
            fi
            # shellcheck disable=SC2046
            jobs_add "collect stats of ${task} (upstream ${up_specs[$i]})" "${stats}.log" \
                ${python} -m "$(task_module "${task}" train)" --config "$(task_var "${task}" config)" \
                --frontend_conf "upstream=$(stats_upstream "${task}" "${up_specs[$i]}")" $(token_opts "${task}") $(task_data "${task}") \
                --collect_stats true --ngpu "${ngpu}" \
                --train_shape_file "${datadir}/${sets[0]}/utt2num_samples" \
                --valid_shape_file "${datadir}/${sets[1]}/utt2num_samples" \
                --output_dir "${stats}.tmp"
            # written whole, then in place: a killed pass leaves no half a stats dir
            jobs_add_after "${stats}.log" "statistics of ${task} in place: ${stats}" "${stats}.mv.log" - \
                bash -c 'rm -rf "$1" && mv "$1.tmp" "$1"' mv "${stats}"
            stats_ready[${stats}]="${stats}.mv.log"
            queued=$(( queued + 1 ))
        done
    done
    if multi_node; then
        if [ "${queued}" -gt 0 ]; then jobs_run "$(job_class)" "${asr_nj}"; else rm -f "${jobs_file}"; fi
        dump_log=(); stats_ready=()
    fi
    for task in ${downstream_tasks}; do
        config=$(task_var "${task}" config)
        for i in "${!up_names[@]}"; do
            run_dir="${expdir}/${task}_${up_names[$i]}"
            stats=$(stats_dir "${task}" "${up_names[$i]}")
            # shellcheck disable=SC2046
            opts=(--config "${config}" $(frontend_opts "${up_specs[$i]}") $(token_opts "${task}") $(task_data "${task}" "${up_names[$i]}" "${up_specs[$i]}"))
            [ "$(config_value "${config}" normalize utterance_mvn)" = global_mvn ] && opts+=(--normalize_conf "stats_file=${stats}/train/feats_stats.npz")
            for shape in $(task_shapes "${task}"); do
                opts+=(--train_shape_file "${stats}/train/${shape}_shape" --valid_shape_file "${stats}/valid/${shape}_shape")
            done
            waits=${dump_log[${up_names[$i]}]:-}
            [ -n "${stats_ready[${stats}]:-}" ] && waits+="${waits:+,}${stats_ready[${stats}]}"
            run=(jobs_add_after "${waits:--}" "${task} training on '${up_names[$i]}' (upstream ${up_specs[$i]})" "${run_dir}/train.log" "${run_dir}/train_seconds")
            multi_node && run=(timed "${run_dir}/train_seconds" launch_train "${run_dir}/train.log")
            head_run_dir "${run_dir}" "${up_specs[$i]}"
            # shellcheck disable=SC2046
            "${run[@]}" ${python} -m "$(task_module "${task}" train)" "${opts[@]}" --ngpu "${ngpu}" "${dist_opts[@]}" \
                --resume true --output_dir "${run_dir}" $(task_var "${task}" args)
        done
    done
    multi_node || jobs_run "$(job_class)" "${asr_nj}"
    for task in ${downstream_tasks}; do
        for i in "${!up_names[@]}"; do
            run_dir="${expdir}/${task}_${up_names[$i]}"
            if [ "${task}" = sid ]; then
                log "SID on '${up_names[$i]}' finished: valid acc $(grep -o 'valid\] [^[]*acc=[^,]*' "${run_dir}/train.log" | tail -n 1 | sed 's/.*acc=//')"
            else
                log "${task^^} on '${up_names[$i]}' finished: valid loss_ctc $(grep -o 'valid\] loss_ctc=[^,]*' "${run_dir}/train.log" | tail -n 1 | sed 's/.*=//')"
            fi
        done
    done
}

# Decoding: every (task, upstream, test set) is split into jobs of at least ${decode_min_utts}
# utterances (at most ${nj} / the number of decodings per set), all drawn from one pool of ${nj}
# at once, then merged.
decode_prepare() {  # decode_prepare RUN_DIR SET MODEL NAME SPEC MAX_JOBS: split the keys into at
                   # most MAX_JOBS jobs; prints the number of jobs
    local run_dir=$1 dset=$2 decode_dir logdir model num _nj speech
    decode_dir="${run_dir}/decode_${dset}"; logdir="${decode_dir}/logdir"
    model="${run_dir}/$3"
    [ -e "${model}" ] || { log "${model} missing: did stage 5 finish? (--<task>_decode_model picks another)"; exit 1; }
    [ -f "${datadir}/${dset}/wav.scp" ] || { log "${datadir}/${dset}/wav.scp missing: run stage 1"; exit 1; }
    speech=$(speech_data "$4" "$5" "${dset}"); speech=${speech%%,*}
    [ -f "${speech}" ] || { log "${speech} missing: run stage 5 (--downstream_feats dump dumps the upstream's states there)"; exit 1; }
    rm -rf "${decode_dir}"; mkdir -p "${logdir}"
    num=$(wc -l < "${datadir}/${dset}/wav.scp")
    _nj=$(( (num + decode_min_utts - 1) / decode_min_utts ))
    [ "${_nj}" -le "$6" ] || _nj=$6
    [ "${_nj}" -ge 1 ] || _nj=1
    # round robin, so every job gets long and short utterances alike
    awk -v nj="${_nj}" -v dir="${logdir}" '{ print $1 > (dir "/keys." ((NR - 1) % nj + 1) ".scp") }' \
        "${datadir}/${dset}/wav.scp"
    echo "${_nj}"
}
decode_merge() {  # decode_merge TASK RUN_DIR SET: the jobs' outputs and their summed seconds
    local decode_dir="$2/decode_$3" f num out=1best_recog
    [ "$1" = sid ] && out=prediction  # cls_inference's layout
    num=$(wc -l < "${datadir}/$3/wav.scp")
    mkdir -p "${decode_dir}/${out}"
    for f in text token score; do
        cat "${decode_dir}"/logdir/output.*/"${out}/${f}" | LC_ALL=C sort > "${decode_dir}/${out}/${f}"
    done
    # the decoding time of a run: the sum of its jobs' wall times (they share the pool)
    cat "${decode_dir}"/logdir/seconds.* | awk '{ s += $1 } END { printf "%.1f\n", s }' > "${decode_dir}/decode_seconds.tmp"
    mv "${decode_dir}/decode_seconds.tmp" "${decode_dir}/decode_seconds"
    log "${decode_dir}/${out}/text: $(wc -l < "${decode_dir}/${out}/text") of ${num} utterances"
}

greedy_decoding() {  # true when tasks asr and pr decode greedily (--ctc_greedy, at beam 1)
    case "${ctc_greedy}" in
        true) [ "${decode_beam_size}" -eq 1 ] ;;
        false) return 1 ;;
        *) log "--ctc_greedy must be true or false, got '${ctc_greedy}'"; exit 2 ;;
    esac
}

stage_decode() {
    check_tasks
    greedy_decoding || true  # a bad --ctc_greedy stops here, before any decoding dir is cleared
    resolve_upstreams
    local task k dset run_dir i j jobs pairs=() counts=() total=0 logdir model speech max_split
    for task in ${downstream_tasks}; do
        for k in "${!up_names[@]}"; do
            for dset in $(task_test_sets "${task}"); do
                pairs+=("${task} ${expdir}/${task}_${up_names[$k]} ${dset} ${k}")
            done
        done
    done
    # A set is split only while the pool has more slots than decodings: past that, a split
    # buys no parallelism and costs each part an interpreter start and a model load.
    max_split=$(( nj / ${#pairs[@]} )); [ "${max_split}" -ge 1 ] || max_split=1
    for i in "${!pairs[@]}"; do
        read -r task run_dir dset k <<< "${pairs[$i]}"
        jobs=$(decode_prepare "${run_dir}" "${dset}" "$(task_var "${task}" decode_model)" "${up_names[$k]}" "${up_specs[$k]}" "${max_split}")
        counts+=("${jobs}"); total=$(( total + jobs ))
    done
    [ "${total}" -gt 0 ] || { log "nothing to decode (--upstreams '${upstreams}', --test_sets '${test_sets}', --sid_test_sets '${sid_test_sets}')"; exit 1; }
    jobs_begin
    for i in "${!pairs[@]}"; do
        read -r task run_dir dset k <<< "${pairs[$i]}"
        speech=$(speech_data "${up_names[$k]}" "${up_specs[$k]}" "${dset}")
        logdir="${run_dir}/decode_${dset}/logdir"
        model="${run_dir}/$(task_var "${task}" decode_model)"
        log "decoding ${dset} with ${model}: ${counts[$i]} job(s), logs in ${logdir}/decode.*.log"
        for j in $(seq "${counts[$i]}"); do
            if [ "${task}" = sid ]; then
                # shellcheck disable=SC2086
                jobs_add_timed "classification job ${j}/${counts[$i]} of ${run_dir}/decode_${dset}" "${logdir}/decode.${j}.log" "${logdir}/seconds.${j}" \
                    ${python} -m espnet2_stacking.bin.cls_inference \
                    --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --batch_size 1 \
                    --classification_train_config "${run_dir}/config.yaml" --classification_model_file "${model}" \
                    --data_path_and_name_and_type "${speech}" \
                    --key_file "${logdir}/keys.${j}.scp" --output_dir "${logdir}/output.${j}" \
                    ${sid_inference_args}
            elif greedy_decoding; then
                # shellcheck disable=SC2086
                jobs_add_timed "decoding job ${j}/${counts[$i]} of ${run_dir}/decode_${dset}" "${logdir}/decode.${j}.log" "${logdir}/seconds.${j}" \
                    ${python} -m espnet2_stacking.bin.ctc_greedy_inference \
                    --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --batch_size "${decode_batch_size}" \
                    --asr_train_config "${run_dir}/config.yaml" --asr_model_file "${model}" \
                    --data_path_and_name_and_type "${speech}" \
                    --key_file "${logdir}/keys.${j}.scp" --output_dir "${logdir}/output.${j}" \
                    ${inference_args}
            else
                # shellcheck disable=SC2086
                jobs_add_timed "decoding job ${j}/${counts[$i]} of ${run_dir}/decode_${dset}" "${logdir}/decode.${j}.log" "${logdir}/seconds.${j}" \
                    ${python} -m espnet2_stacking.bin.asr_inference \
                    --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --batch_size "${decode_batch_size}" --ctc_weight 1.0 --lm_weight 0.0 \
                    --beam_size "${decode_beam_size}" \
                    --asr_train_config "${run_dir}/config.yaml" --asr_model_file "${model}" \
                    --data_path_and_name_and_type "${speech}" \
                    --key_file "${logdir}/keys.${j}.scp" --output_dir "${logdir}/output.${j}" \
                    ${inference_args}
            fi
        done
    done
    jobs_run "$(job_class)" "${nj}" "${ngpu}"
    for i in "${!pairs[@]}"; do
        read -r task run_dir dset k <<< "${pairs[$i]}"
        decode_merge "${task}" "${run_dir}" "${dset}"
    done
}

stage_score() {
    check_tasks
    resolve_upstreams
    local task name dirs opts=()
    for task in ${downstream_tasks}; do
        dirs=()
        for name in "${up_names[@]}"; do dirs+=("${expdir}/${task}_${name}"); done
        opts+=("--${task}_dirs" "${dirs[@]}")
    done
    ${python} -m espnet2_stacking.bin.score_asr --datadir "${datadir}" --test_sets "${test_sets}" \
        --sid_test_sets "${sid_test_sets}" --phone_text "${phone_text}" "${opts[@]}" \
        --results "${results}" --stage_times "${timing_log}"
}

run_stage 0 stage_teacher
run_stage 1 stage_data_prep
run_stage 2 stage_dump
run_stage 3 stage_distill
run_stage 4 stage_export
run_stage 5 stage_downstream_train
run_stage 6 stage_decode
run_stage 7 stage_score
log "Finished stages ${stage}-${stop_stage}; times in ${timing_log}"
