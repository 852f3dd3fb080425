#!/usr/bin/env bash
# Prepares, on a machine with network, the wheels bench/run_gpu.sh installs on a GPU machine
# that has none: one folder, .whl/ in the checkout (git-ignored), that travels with it.
#
# The GPU machines this project is measured on have Python 3.12, PyTorch 2.11, torchaudio and
# transformers but no ESPnet. This resolves this package's install (espnet[asr]==202611 and the
# rest of setup.py's requirements, at tools/constraints.txt's versions, torch pinned to the GPU's)
# for Python 3.12 on Linux x86-64, keeps what such a machine lacks (bench/gpu_wheels.py says how:
# never torch, torchaudio, transformers, triton, nvidia-*, cuda-* nor what they pull in, nor what
# the GPU image lists, unless a pin or an upper bound asks for another version), and downloads
# those: `pip download --no-deps --only-binary :all:` for Python 3.12 manylinux x86-64, or, for a
# package published as source only, a wheel built here (pure Python, or built for this
# machine's x86-64 Linux). setuptools, wheel and packaging come too, for run_gpu.sh's offline
# editable install of this checkout (the package itself is not copied: the checkout is
# installed as it is then).
# Prints the folder's size (keep it under 64 MiB: what travels to a GPU machine with the
# checkout may be limited to that): about 52 MB, 35 of them PyAV (which omniio, an ESPnet
# requirement, needs).
#
#   bench/prepare_gpu_wheels.sh [--out .whl] [--torch 2.11.0] [--torchaudio 2.11.0]
#                               [--gpu_freeze FILE]
#   --gpu_freeze FILE: `python3 -m pip freeze` of the GPU machine, for an exact selection.
#   PYTHON=/path/to/python3.12 chooses the resolving interpreter (it must be 3.12, the GPU's:
#   the requirements' markers are evaluated for it); default tools/venv's or python3.12.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

out=${root}/.whl
torch=2.11.0
torchaudio=2.11.0
gpu_freeze=
while [ $# -gt 0 ]; do
    case "$1" in
        --out|--torch|--torchaudio|--gpu_freeze) declare "${1#--}=$2"; shift 2 ;;
        *) echo "unknown option $1 (options: --out --torch --torchaudio --gpu_freeze)" >&2; exit 2 ;;
    esac
done
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (prepare_gpu_wheels.sh) $*" >&2; }

is312() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; }
py=
for cand in "${PYTHON:-}" "${root}/tools/venv/bin/python" python3.12 python3; do
    [ -n "${cand}" ] && command -v "${cand}" >/dev/null 2>&1 && is312 "${cand}" && { py=${cand}; break; }
done
[ -n "${py}" ] || { log "ERROR: no Python 3.12 found (the GPU machine's); set PYTHON=/path/to/python3.12"; exit 1; }

# Some machines' pip.conf names local find-links folders that do not exist; pip warns once per
# package about them, which buries real messages.
pip() { "${py}" -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
# the tested versions, less the GPU machine's own torch stack
grep -v -i -E '^(#|torch==|torchaudio==|triton==|nvidia-|cuda-)' "${root}/tools/constraints.txt" > "${tmp}/constraints.txt"

start=$(date +%s)
log "resolving torch ${torch}, torchaudio ${torchaudio} and transformers (what the GPU machine has)"
pip install --quiet --dry-run --ignore-installed --report "${tmp}/base.json" \
    "torch==${torch}" "torchaudio==${torchaudio}" transformers
log "resolving this package's install beside them"
pip install --quiet --dry-run --ignore-installed --report "${tmp}/full.json" -c "${tmp}/constraints.txt" \
    "torch==${torch}" "torchaudio==${torchaudio}" "${root}"
"${py}" "${root}/bench/gpu_wheels.py" --full "${tmp}/full.json" --base "${tmp}/base.json" \
    ${gpu_freeze:+--gpu_freeze "${gpu_freeze}"} > "${tmp}/wanted.txt"
log "$(wc -l < "${tmp}/wanted.txt") packages to fetch: $(tr '\n' ' ' < "${tmp}/wanted.txt")"

mkdir -p "${out}"
rm -f "${out}"/*.whl "${out}/requirements.txt"  # one version of each: the last preparation's
platforms=()
for n in 39 35 34 31 28 27 24 17 5; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64)
built=()
while read -r req; do
    if ! pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "${out}" "${req}" 2> "${tmp}/err"; then
        log "${req}: no wheel for Python 3.12 manylinux x86-64 on the index; building one here"
        pip wheel --quiet --no-deps --wheel-dir "${out}" "${req}" || { cat "${tmp}/err" >&2; exit 1; }
        built+=("${req}")
    fi
done < "${tmp}/wanted.txt"
cp "${tmp}/wanted.txt" "${out}/requirements.txt"

bytes=$(du -sb "${out}" | cut -f1)
log "done in $(( $(date +%s) - start )) s: $(ls "${out}"/*.whl | wc -l) wheels in ${out}${built:+ (built here: ${built[*]})}"
echo "${out}: $(du -sh "${out}" | cut -f1) ($(( bytes / 1048576 )) MiB)"
if [ "${bytes}" -gt $(( 60 * 1048576 )) ]; then
    log "WARNING: over 60 MiB: with the checkout it may not fit a 64 MiB transfer"
fi
