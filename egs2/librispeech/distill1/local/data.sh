#!/usr/bin/env bash
# LibriSpeech: read the standard layout (<subset>/<speaker>/<chapter>/*.flac + *.trans.txt)
# into Kaldi-style dirs: the training subsets merged into ${datadir}/${train_set}, and one dir
# per dev/test subset named with '_' for '-' (dev-clean -> dev_clean). With --lexicon, every
# dir also gets text_phn, the phone transcripts of phoneme recognition (an utterance with a word
# the lexicon lacks stops this step, listed in <dir>/text_phn.oov; nothing is guessed).
set -euo pipefail

# ---- options
datadir=data
nj=4
librispeech_dir=""              # extracted LibriSpeech tree
train_subsets=train-clean-100   # comma separated, merged
train_set=train_clean_100
valid_subset=dev-clean
test_subsets=test-clean,test-other
on_bad_utt=error                # error|skip
parallel_config=""              # the site's parallel YAML: its cpu class checks the audio
lexicon=""                      # pronunciation lexicon (WORD PHONE ...; e.g. openslr 11's
                                #   librispeech-lexicon.txt): writes each dir's text_phn (task pr)
strip_stress=false              # true: drop ARPAbet stress digits from the lexicon's phones
# ---- end options
. scripts/parse_options.sh

[ -d "${librispeech_dir}" ] || { echo "local/data.sh: LibriSpeech dir '${librispeech_dir}' not found" >&2; exit 1; }
prep() {  # prep SUBSETS OUT
    python3 -m espnet2_stacking.bin.prepare_librispeech --librispeech_dir "${librispeech_dir}" \
        --sets "$1" --out_dir "${datadir}/$2" --nj "${nj}" --on_bad_utt "${on_bad_utt}" \
        ${parallel_config:+--parallel_config "${parallel_config}"}
}
prep "${train_subsets}" "${train_set}"
for s in ${valid_subset} ${test_subsets//,/ }; do
    prep "${s}" "${s//-/_}"
done
if [ -n "${lexicon}" ]; then
    dirs=("${datadir}/${train_set}")
    for s in ${valid_subset} ${test_subsets//,/ }; do dirs+=("${datadir}/${s//-/_}"); done
    python3 -m espnet2_stacking.bin.lexicon_phones --lexicon "${lexicon}" \
        --strip_stress "${strip_stress}" "${dirs[@]}"
fi
