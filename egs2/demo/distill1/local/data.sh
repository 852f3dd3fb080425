#!/usr/bin/env bash
# Demo corpus: synthesise English speech with espeak-ng (voices split train/dev/test so test
# voices are unseen) into Kaldi-style dirs ${datadir}/{train,dev,test}.
set -euo pipefail

# ---- options
datadir=data                  # output data dirs
audio_dir=downloads/demo_wavs # where the synthesised 16 kHz wavs go
nj=2                          # parallel synthesis jobs
train_hours=1.0               # hours of training audio
dev_minutes=5                 # minutes of dev audio
test_minutes=5                # minutes of test audio
seed=0                        # same seed -> same corpus, byte for byte
num_utts=""                   # utterances per split instead of durations (smoke runs)
dev_voices=8                  # voices held out for dev (and as many for test): unseen in train
test_voices=8
accents=""                    # espeak-ng accents and variants (comma separated; empty: all the
variants=""                   #   corpus's); fewer voices give each more utterances (smoke SID)
sid_held_out_every=6          # speaker ID splits of the train voices: per voice, the last of
                              #   every N utterances to sid_test, the one before to sid_dev
parallel_config=""            # the site's parallel YAML: its cpu class synthesises
# ---- end options
. scripts/parse_options.sh

python3 -m espnet2_stacking.bin.prepare_demo_corpus \
    --out_dir "${datadir}" --audio_dir "${audio_dir}" --nj "${nj}" --seed "${seed}" \
    --train_hours "${train_hours}" --dev_minutes "${dev_minutes}" --test_minutes "${test_minutes}" \
    --dev_voices "${dev_voices}" --test_voices "${test_voices}" \
    --sid_held_out_every "${sid_held_out_every}" \
    ${accents:+--accents "${accents}"} ${variants:+--variants "${variants}"} \
    ${num_utts:+--num_utts "${num_utts}"} \
    ${parallel_config:+--parallel_config "${parallel_config}"}
