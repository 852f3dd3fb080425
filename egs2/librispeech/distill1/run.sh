#!/usr/bin/env bash
# LibriSpeech recipe: distil a real teacher (e.g. HuBERT Base) into the paper's 12-layer,
# width-384 student with interleaved stacking, then SUPERB-style ASR on train-clean-100.
#   ./run.sh --librispeech_dir /data/LibriSpeech --teacher /models/hubert_base_ls960.pt --ngpu 4
# Any distill.sh option (./distill.sh --help) can be given as well. An epoch is one pass over the
# training set whatever --train_subsets holds (--epoch_from_data true): the configs' max_epoch
# then means passes, as in the paper (75 epochs of 960 h).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ---- options
librispeech_dir=""                     # extracted LibriSpeech tree (holds train-clean-100/ ...)
train_subsets=train-clean-100         # LibriSpeech subsets merged into the training set,
                                       #   e.g. train-clean-100,train-clean-360,train-other-500
train_set=train_clean_100              # its data dir name
valid_subset=dev-clean
test_subsets=test-clean,test-other      # comma separated
on_bad_utt=error                       # error|skip (skips are logged and counted)
lexicon=""                             # pronunciation lexicon: text_phn for task pr (README:
                                       #   downstream tasks); SID has no LibriSpeech split yet
# ---- end options
pass_unknown=true
. scripts/parse_options.sh
. ./path.sh

[ -n "${librispeech_dir}" ] || { echo "run.sh: --librispeech_dir is required (the folder holding train-clean-100/ ...)" >&2; exit 2; }
to_dirname() { tr '-' '_' <<< "$1"; }
test_sets=""
for s in ${test_subsets//,/ }; do test_sets+="$(to_dirname "${s}") "; done

./distill.sh \
    --train_set "${train_set}" \
    --valid_set "$(to_dirname "${valid_subset}")" \
    --test_sets "${test_sets% }" \
    --local_data_opts "--librispeech_dir ${librispeech_dir} --train_subsets ${train_subsets} --train_set ${train_set} --valid_subset ${valid_subset} --test_subsets ${test_subsets} --on_bad_utt ${on_bad_utt}${lexicon:+ --lexicon ${lexicon}}" \
    --distill_config conf/distill_interleaved_eql.yaml \
    --asr_config conf/asr_superb.yaml \
    --pr_config conf/pr_superb.yaml \
    --epoch_from_data true \
    "${passthrough_args[@]}"
