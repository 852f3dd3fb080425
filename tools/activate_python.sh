# Sourced by recipes (ESPnet convention): puts tools/venv first on PATH.
# shellcheck disable=SC2148
_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -x "${_tools_dir}/venv/bin/python" ]; then
    echo "tools/venv is missing: run ${_tools_dir}/install.sh first" >&2
    return 1
fi
# shellcheck disable=SC1091
. "${_tools_dir}/venv/bin/activate"
unset _tools_dir
