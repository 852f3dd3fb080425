#!/usr/bin/env bash
# The paper's setting at full size on one GPU, in one command, from a clean checkout (budget:
# under 8 minutes on an H200, install included). No download: it synthesises its corpus.
#
# On a machine with network, once (fills .whl/ in the checkout: ESPnet and what a machine with
# PyTorch, torchaudio and transformers lacks; about 52 MB):
#   bench/prepare_gpu_wheels.sh
# then, on the GPU machine, with .whl/ beside the checkout's files:
#   bench/run_gpu.sh --name h200
#
# What it does (bench/gpu_speed.py; its --help lists every option):
#   0. checks that espnet and espnet2_stacking import; if not, installs them offline:
#      `pip install --no-index --find-links .whl -e .` (never the network; it stops, saying
#      what to do, when .whl/ is missing);
#   1. synthesises 320 + 16 utterances of 2-16 s at 16 kHz (tones, chirps, noise; numpy);
#   2. dumps the HuBERT-Base-shaped random teacher's states 4, 8, 12 and its CNN's output
#      (random:hubert?layers=12&dim=768&heads=12&ffn=3072&conv=512&pos_kernel=128&pos_groups=16,
#      bf16), timed: dump throughput in audio hours per hour;
#   3. trains none, interleaved EQL and interleaved PROP-1, with the dumped targets and with the
#      teacher online, 300 updates each, from egs2/librispeech/distill1/conf/
#      distill_interleaved_eql_frozen_cnn.yaml (12 x 384 student grown 3 > 6 > 9 > 12, the
#      teacher's CNN frozen), bf16 autocast, batches of 64 crops of 250000 samples;
#   4. writes bench/results/gpu_<name>.json and prints a Markdown table: ms per update at each
#      depth, speed-up against none (same mode) and against the schedule's ideal (with the
#      measured layer share), online / dumped time per update, peak GPU memory per run, audio
#      hours per GPU-hour, and the dump's throughput.
#
# Options (all passed to bench/gpu_speed.py; defaults at full size, then --tiny's):
#   --name NAME                 bench/results/gpu_<NAME>.json (gpu; tiny)
#   --out_dir DIR               where the JSON goes (bench/results)
#   --work_dir DIR              corpus, dump and runs under DIR/gpu_<NAME>/ (bench/work)
#   --updates N                 updates per run (300; 12)
#   --batch_size N              crops per batch (64; 4), lower it when memory says so
#   --crop_max_samples N        samples per crop (250000; 16000)
#   --num_workers N             loader workers (8; 0)
#   --utts N --dev_utts N       synthetic utterances (320, 16; 12, 4)
#   --min_seconds S --max_seconds S   their lengths (2, 16; 0.5, 1.5)
#   --methods LIST              none,interleaved_eql,interleaved_prop1 (stacking_speed.py's METHODS)
#   --teacher_modes LIST        dump,online
#   --teacher SPEC --teacher_dtype float32|bfloat16|float16 --amp true|false --curve_points N
#   --tiny                      toy size on the CPU (a 4 x 32 teacher, a 4 x 16 student grown
#                               2 > 4, 12 updates per run, fp32): the whole path in a minute or two
# PYTHON=/path/to/python chooses the interpreter (default tools/venv's when present, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run_gpu.sh) $*" >&2; }

py=${PYTHON:-}
if [ -z "${py}" ]; then
    if [ -x "${root}/tools/venv/bin/python" ]; then py=${root}/tools/venv/bin/python; else py=python3; fi
fi
# from /, so that the checkout itself does not count as installed
imports() { (cd / && "${py}" -c 'import espnet, espnet2_stacking') >/dev/null 2>&1; }

start=$(date +%s)
if ! imports; then
    if ! ls "${root}"/.whl/*.whl >/dev/null 2>&1; then
        log "ERROR: espnet or espnet2_stacking does not import with ${py}, and there is no ${root}/.whl/"
        log "       folder of wheels to install them from (this script never uses the network)."
        log "       On a machine with network run bench/prepare_gpu_wheels.sh in this checkout, and"
        log "       bring its .whl/ folder here (or install espnet 202611 and this package yourself)."
        exit 1
    fi
    log "espnet or espnet2_stacking missing: installing them offline from .whl/ (and this checkout, editable)"
    "${py}" -m pip install --quiet --no-index --find-links "${root}/.whl" -e "${root}"
    imports || { log "ERROR: espnet or espnet2_stacking still does not import after the install"; exit 1; }
fi
install_seconds=$(( $(date +%s) - start ))
log "ready in ${install_seconds} s; benchmarking"
PYTHONUNBUFFERED=1 "${py}" "${root}/bench/gpu_speed.py" --install_seconds "${install_seconds}" "$@"
log "all done in $(( $(date +%s) - start )) s"
