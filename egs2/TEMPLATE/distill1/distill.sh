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
#   5 downstream ASR        token list, collect stats, SUPERB-style ASR training on the student
#   6 decoding              CTC decoding of ${test_sets}
#   7 scoring               WER/CER in Python -> RESULTS.md
#
# Every stage is plain Python under espnet2_stacking.bin; this file only strings them together.
# Parallel jobs (dump, ASR trainings, decoding) run through ESPnet's espnet3.parallel, here or
# on the site's scheduler (--parallel_config); several nodes train through espnet2.bin.launch.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*" >&2; }

# ---- options (each --name value overrides the default below) ---------------
stage=0                 # first stage to run
stop_stage=7            # last stage to run
ngpu=0                  # GPUs for the teacher dump, distillation and ASR (0: CPU)
nj=4                    # parallel jobs for data prep, dump and decoding
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
teacher_args=""         # extra options for pretrain_teacher
teacher_dtype=float32   # float32|bfloat16|float16 for running the teacher
teacher_mode=dump       # dump: read stage-2 features; online: run the teacher every step
dump_args=""            # extra options for dump_teacher_feats (e.g. "--normalize layer_norm")
distill_config=""       # YAML for stage 3; stage 2 dumps its stacking_conf.targets (and, with
                        # student_cnn: teacher_frozen, the teacher's CNN output)
distill_args=""         # extra options for distill_train
epoch_from_data=false   # true: an epoch is one pass over ${train_set} (num_iters_per_epoch =
                        #   ceil(utterances / the config's batch_size)); distill_args still win
asr_config=""           # YAML for stage 5
asr_args=""             # extra options for asr_train
asr_nj=1                # ASR trainings run at once, one per upstream (CPU: threads are split
                        # between them; on GPUs keep 1)
asr_upstreams="student teacher student_random"  # upstreams of stages 5-7, each -> ${expdir}/asr_<name>:
                        #   student: stage 4's export; teacher: ${teacher}; student_random: its
                        #   random-init export (skipped with a warning when stage 4 wrote none)
token_type=char         # ASR output units: char or bpe
nbpe=300                # SentencePiece vocabulary size (token_type=bpe)
asr_decode_model=valid.loss.ave.pth  # checkpoint of each ASR run that stage 6 decodes with
decode_beam_size=1      # CTC prefix beam search width (1: greedy, as SUPERB)
decode_min_utts=50      # fewest utterances per decoding job: a job costs an interpreter
                        # start and a model load, more than decoding a few utterances
inference_args=""       # extra options for asr_inference
results=RESULTS.md      # stage 7 writes the WER/CER tables here

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

# ---- parallel jobs: queued in a list, run by ESPnet's parallel engine (espnet3.parallel, Dask)
# on this machine or on the site's scheduler (${parallel_config}), each logging to its own file
jobs_file=""
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
    # Then the evidence that it learned something layer-specific: linear probes and layer CKA
    # against a random init of the same config, on held-out speakers (the first test set).
    probe_set=${test_sets%% *}
    # --resume: a rerun skips finished labels and stats and continues ESPnet's training.
    # shellcheck disable=SC2086
    ${python} -m espnet2_stacking.bin.pretrain_teacher --config "${teacher_config}" \
        --data_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --extra_dirs "${extra[@]}" --out_dir "${teacher_dir}" --nj "${nj}" --resume \
        --probe_dir "${datadir}/${probe_set}" ${teacher_args}
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

# ---- stages 5-7: SUPERB-style ASR on each upstream ------------------------------------
require_asr_config() {
    [ -f "${asr_config}" ] || { log "--asr_config '${asr_config}' not found"; exit 2; }
}
token_dir() {
    case "${token_type}" in
        char) echo "${datadir}/token_list/char" ;;
        bpe) echo "${datadir}/token_list/bpe_unigram${nbpe}" ;;
        *) log "--token_type must be char or bpe, got '${token_type}'"; exit 2 ;;
    esac
}
token_opts() {  # the token options every asr_train call gets
    local dir; dir=$(token_dir)
    echo "--token_type ${token_type} --token_list ${dir}/tokens.txt"
    [ "${token_type}" = bpe ] && echo "--bpemodel ${dir}/bpe.model"
    return 0
}
asr_upstream_spec() {  # name -> upstream spec on stdout; nothing: skip this upstream (warned)
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
        *) log "unknown upstream '${name}' in --asr_upstreams (known: student teacher student_random)"; exit 2 ;;
    esac
}

make_token_list() {
    local dir text="${datadir}/${train_set}/text" opts=()
    dir=$(token_dir)
    [ -f "${text}" ] || { log "${text} missing: run stage 1"; exit 1; }
    if [ -s "${dir}/tokens.txt" ]; then
        log "token list ${dir}/tokens.txt exists: kept"
        return
    fi
    mkdir -p "${dir}"
    if [ "${token_type}" = bpe ]; then
        ${python} -m espnet2_stacking.bin.spm_train --text "${text}" --vocab_size "${nbpe}" \
            --model_prefix "${dir}/bpe"
        opts+=(--bpemodel "${dir}/bpe.model")
    fi
    # ESPnet's layout: <blank> first, <unk> second, units by frequency, <sos/eos> last
    # (the char tokenizer writes spaces as <space>).
    ${python} -m espnet2.bin.tokenize_text --token_type "${token_type}" "${opts[@]}" \
        --input "${text}" --output "${dir}/tokens.txt.tmp" --field 2- --cleaner none \
        --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
    mv "${dir}/tokens.txt.tmp" "${dir}/tokens.txt"
    log "token list: ${dir}/tokens.txt ($(wc -l < "${dir}/tokens.txt") units)"
}
check_texts() {  # characters the token list lacks become <unk>: count them, fail on many
    [ "${token_type}" = char ] || return 0
    local dset texts=()
    for dset in ${valid_set} ${test_sets}; do texts+=("${datadir}/${dset}/text"); done
    ${python} -m espnet2_stacking.bin.check_text --token_list "$(token_dir)/tokens.txt" "${texts[@]}"
}

asr_stats_per_upstream() {  # true: each upstream needs its own collect-stats pass
    # Without feature extraction in collect stats (model_conf.extract_feats_in_collect_stats:
    # false, so no global_mvn statistics), the pass only measures shapes, the same for every
    # upstream: one shared pass.
    config_value "${asr_config}" model_conf.extract_feats_in_collect_stats true
}

stage_asr_train() {
    require_asr_config
    make_token_list
    check_texts
    if [ "${asr_nj}" -gt 1 ] && [ "${ngpu}" -gt 0 ]; then
        log "--asr_nj ${asr_nj} with --ngpu ${ngpu}: parallel ASR trainings would share the GPUs; use --asr_nj 1"
        exit 2
    fi
    local name spec asr_dir stats data opts=() dist_opts=() names=() specs=() stats_dirs=() tag d i
    [ "${ngpu}" -gt 1 ] && ! multi_node && dist_opts+=(--multiprocessing_distributed true)
    for name in ${asr_upstreams}; do
        spec=$(asr_upstream_spec "${name}")
        [ -n "${spec}" ] || continue
        names+=("${name}"); specs+=("${spec}")
    done
    [ ${#names[@]} -gt 0 ] || { log "no upstream to train ASR on (--asr_upstreams '${asr_upstreams}')"; exit 1; }
    data=()
    for tag in train valid; do
        d=${train_set}; [ "${tag}" = valid ] && d=${valid_set}
        data+=(--${tag}_data_path_and_name_and_type "${datadir}/${d}/wav.scp,speech,sound"
               --${tag}_data_path_and_name_and_type "${datadir}/${d}/text,text,text")
    done
    # Shapes (and feature statistics for global_mvn) come from ESPnet's collect-stats pass.
    local per_upstream; per_upstream=$(asr_stats_per_upstream)
    for i in "${!names[@]}"; do
        if [ "${per_upstream}" = true ]; then
            stats_dirs+=("${expdir}/asr_${names[$i]}/stats")
        else
            stats_dirs+=("${expdir}/asr_stats_$(basename "$(token_dir)")")
        fi
    done
    for i in "${!names[@]}"; do
        stats=${stats_dirs[$i]}
        [ "${i}" -gt 0 ] && [ "${stats}" = "${stats_dirs[0]}" ] && continue  # shared: done once
        if [ -s "${stats}/valid/speech_shape" ]; then
            log "${stats} exists: collect-stats skipped"
            continue
        fi
        # shellcheck disable=SC2046
        ${python} -m espnet2_stacking.bin.asr_train --config "${asr_config}" \
            --frontend_conf "upstream=${specs[$i]}" $(token_opts) "${data[@]}" \
            --collect_stats true --ngpu "${ngpu}" \
            --train_shape_file "${datadir}/${train_set}/utt2num_samples" \
            --valid_shape_file "${datadir}/${valid_set}/utt2num_samples" \
            --output_dir "${stats}.tmp"
        rm -rf "${stats}"; mv "${stats}.tmp" "${stats}"
    done
    multi_node || jobs_begin
    for i in "${!names[@]}"; do
        asr_dir="${expdir}/asr_${names[$i]}"
        stats=${stats_dirs[$i]}
        # shellcheck disable=SC2046
        opts=(--config "${asr_config}" --frontend_conf "upstream=${specs[$i]}" $(token_opts) "${data[@]}")
        [ "$(config_value "${asr_config}" normalize utterance_mvn)" = global_mvn ] && opts+=(--normalize_conf "stats_file=${stats}/train/feats_stats.npz")
        # one node: a job each (--asr_nj at once); several nodes: one after the other, each
        # on all of them through ESPnet's launcher
        local run=(jobs_add "ASR training on '${names[$i]}' (upstream ${specs[$i]})" "${asr_dir}/train.log")
        multi_node && run=(launch_train "${asr_dir}/train.log")
        # shellcheck disable=SC2086
        "${run[@]}" ${python} -m espnet2_stacking.bin.asr_train "${opts[@]}" --ngpu "${ngpu}" "${dist_opts[@]}" \
            --resume true --output_dir "${asr_dir}" \
            --train_shape_file "${stats}/train/speech_shape" \
            --train_shape_file "${stats}/train/text_shape" \
            --valid_shape_file "${stats}/valid/speech_shape" \
            --valid_shape_file "${stats}/valid/text_shape" \
            ${asr_args}
    done
    multi_node || jobs_run "$(job_class)" "${asr_nj}"
    for name in "${names[@]}"; do
        log "ASR on '${name}' finished: valid loss_ctc $(grep -o 'valid\] loss_ctc=[^,]*' "${expdir}/asr_${name}/train.log" | tail -n 1 | sed 's/.*=//')"
    done
}

# Decoding: every (upstream, test set) is split into jobs of at least ${decode_min_utts}
# utterances (at most ${nj} per set), all drawn from one pool of ${nj} at once, then merged.
decode_prepare() {  # decode_prepare ASR_DIR SET: split the keys; prints the number of jobs
    local asr_dir=$1 dset=$2 decode_dir logdir model num _nj
    decode_dir="${asr_dir}/decode_${dset}"; logdir="${decode_dir}/logdir"
    model="${asr_dir}/${asr_decode_model}"
    [ -e "${model}" ] || { log "${model} missing: did stage 5 finish? (--asr_decode_model picks another)"; exit 1; }
    [ -f "${datadir}/${dset}/wav.scp" ] || { log "${datadir}/${dset}/wav.scp missing: run stage 1"; exit 1; }
    rm -rf "${decode_dir}"; mkdir -p "${logdir}"
    num=$(wc -l < "${datadir}/${dset}/wav.scp")
    _nj=$(( (num + decode_min_utts - 1) / decode_min_utts ))
    [ "${_nj}" -le "${nj}" ] || _nj=${nj}
    [ "${_nj}" -ge 1 ] || _nj=1
    # round robin, so every job gets long and short utterances alike
    awk -v nj="${_nj}" -v dir="${logdir}" '{ print $1 > (dir "/keys." ((NR - 1) % nj + 1) ".scp") }' \
        "${datadir}/${dset}/wav.scp"
    echo "${_nj}"
}
decode_merge() {  # decode_merge ASR_DIR SET
    local decode_dir="$1/decode_$2" f num
    num=$(wc -l < "${datadir}/$2/wav.scp")
    mkdir -p "${decode_dir}/1best_recog"
    for f in text token score; do
        cat "${decode_dir}"/logdir/output.*/1best_recog/"${f}" | LC_ALL=C sort > "${decode_dir}/1best_recog/${f}"
    done
    log "${decode_dir}/1best_recog/text: $(wc -l < "${decode_dir}/1best_recog/text") of ${num} utterances"
}

stage_decode() {
    local name spec dset asr_dir i j jobs pairs=() counts=() total=0 logdir
    for name in ${asr_upstreams}; do
        spec=$(asr_upstream_spec "${name}")
        [ -n "${spec}" ] || continue
        for dset in ${test_sets}; do
            pairs+=("${expdir}/asr_${name} ${dset}")
            jobs=$(decode_prepare "${expdir}/asr_${name}" "${dset}")
            counts+=("${jobs}"); total=$(( total + jobs ))
        done
    done
    [ "${total}" -gt 0 ] || { log "nothing to decode (--asr_upstreams '${asr_upstreams}', --test_sets '${test_sets}')"; exit 1; }
    jobs_begin
    for i in "${!pairs[@]}"; do
        read -r asr_dir dset <<< "${pairs[$i]}"
        logdir="${asr_dir}/decode_${dset}/logdir"
        log "decoding ${dset} with ${asr_dir}/${asr_decode_model}: ${counts[$i]} job(s), logs in ${logdir}/decode.*.log"
        for j in $(seq "${counts[$i]}"); do
            # shellcheck disable=SC2086
            jobs_add "decoding job ${j}/${counts[$i]} of ${asr_dir}/decode_${dset}" "${logdir}/decode.${j}.log" \
                ${python} -m espnet2_stacking.bin.asr_inference \
                --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --batch_size 1 --ctc_weight 1.0 --lm_weight 0.0 \
                --beam_size "${decode_beam_size}" \
                --asr_train_config "${asr_dir}/config.yaml" --asr_model_file "${asr_dir}/${asr_decode_model}" \
                --data_path_and_name_and_type "${datadir}/${dset}/wav.scp,speech,sound" \
                --key_file "${logdir}/keys.${j}.scp" --output_dir "${logdir}/output.${j}" \
                ${inference_args}
        done
    done
    jobs_run "$(job_class)" "${nj}" "${ngpu}"
    for i in "${!pairs[@]}"; do
        read -r asr_dir dset <<< "${pairs[$i]}"
        decode_merge "${asr_dir}" "${dset}"
    done
}

stage_score() {
    local name spec dirs=()
    for name in ${asr_upstreams}; do
        spec=$(asr_upstream_spec "${name}")
        [ -n "${spec}" ] && dirs+=("${expdir}/asr_${name}")
    done
    [ ${#dirs[@]} -gt 0 ] || { log "no ASR run to score (--asr_upstreams '${asr_upstreams}')"; exit 1; }
    ${python} -m espnet2_stacking.bin.score_asr --datadir "${datadir}" --test_sets "${test_sets}" \
        --asr_dirs "${dirs[@]}" --results "${results}" --stage_times "${timing_log}"
}

run_stage 0 stage_teacher
run_stage 1 stage_data_prep
run_stage 2 stage_dump
run_stage 3 stage_distill
run_stage 4 stage_export
run_stage 5 stage_asr_train
run_stage 6 stage_decode
run_stage 7 stage_score
log "Finished stages ${stage}-${stop_stage}; times in ${timing_log}"
