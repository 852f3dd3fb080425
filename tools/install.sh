#!/usr/bin/env bash
# Installs everything espnet2_stacking needs into tools/venv, in ESPnet's style
# (recipes then `. tools/activate_python.sh`).  Idempotent: when nothing that
# decides the install has changed, a rerun checks a stamp and exits in seconds.
#
# Usage: tools/install.sh [--force]
#   PYTHON=/path/to/python3.12 tools/install.sh   to choose the interpreter.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
stamp="${tools_dir}/.install_stamp"
force=false
[ "${1:-}" = "--force" ] && force=true

log() { echo "[install] $*" >&2; }

# ---- 1. system tools: espeak-ng (demo corpus) and sox (audio checks) -------
missing_pkgs=()
command -v espeak-ng >/dev/null 2>&1 || missing_pkgs+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing_pkgs+=(sox)
if [ ${#missing_pkgs[@]} -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo_cmd=(sudo -n)
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ ${#sudo_cmd[@]} -gt 0 ]; }; then
        log "installing ${missing_pkgs[*]} with apt-get"
        "${sudo_cmd[@]}" apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
    else
        log "WARNING: ${missing_pkgs[*]} not found and cannot be installed here (no apt-get or no root)."
        log "         Install them yourself, e.g. 'sudo apt-get install ${missing_pkgs[*]}'"
        log "         (macOS: 'brew install espeak-ng sox'). The demo corpus needs espeak-ng."
    fi
fi

# ---- 2. a Python 3.12 or 3.13 ----------------------------------------------
python_ok() {  # prints the interpreter's real path when it is 3.12 or 3.13
    "$1" -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13)); print(sys.executable)' 2>/dev/null
}
find_python() {
    local cand exe
    if [ -n "${PYTHON:-}" ]; then
        python_ok "${PYTHON}" || { log "PYTHON=${PYTHON} is not Python 3.12 or 3.13"; return 1; }
        return 0
    fi
    for cand in python3.12 python3.13 python3; do
        command -v "${cand}" >/dev/null 2>&1 && exe=$(python_ok "${cand}") && { echo "${exe}"; return 0; }
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[23]\.[0-9]+$' | sort -V); do
            exe=$(PYENV_VERSION="${cand}" pyenv which python3 2>/dev/null) && exe=$(python_ok "${exe}") && { echo "${exe}"; return 0; }
        done
    fi
    return 1
}

# ---- 3. the stamp: what decides the install ---------------------------------
want_stamp=$( { cat "${repo_dir}/setup.py" "${tools_dir}/constraints.txt" "${tools_dir}/install.sh"; } | sha256sum | cut -d' ' -f1)
if ! ${force} && [ -x "${venv}/bin/python" ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want_stamp}" ] \
    && "${venv}/bin/python" -c 'import espnet2_stacking' 2>/dev/null; then
    log "tools/venv is up to date (tools/install.sh --force reinstalls)"
    exit 0
fi

if [ ! -x "${venv}/bin/python" ]; then
    py=$(find_python) || {
        log "ERROR: no Python 3.12 or 3.13 found (espnet 202611 needs one)."
        log "       Install one (e.g. 'apt-get install python3.12-venv' or 'pyenv install 3.12'),"
        log "       or point PYTHON=/path/to/python3.12 at it."
        exit 1
    }
    log "creating tools/venv with ${py}"
    "${py}" -m venv "${venv}"
fi

start=$(date +%s)
log "installing espnet2_stacking and its pinned dependencies (first time: a few minutes, ~7 GB)"
pip_install() {
    # Some machines' pip.conf names local find-links folders that do not exist; pip warns once
    # per package about them, which buries real messages.
    "${venv}/bin/python" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
pip_install --upgrade "pip==25.3"
# The constraints pin the exact versions the tests ran with.
pip_install -c "${tools_dir}/constraints.txt" -e "${repo_dir}[test]"
echo "${want_stamp}" > "${stamp}"
log "done in $(( $(date +%s) - start )) s: $("${venv}/bin/python" -c 'import espnet, torch, torchaudio; print(f"espnet {espnet.__version__}, torch {torch.__version__}, torchaudio {torchaudio.__version__}")')"
