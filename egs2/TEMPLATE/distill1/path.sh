# Sourced by run.sh: installs tools/venv on first use (a no-op taking well under a second
# afterwards) and activates it.
# shellcheck disable=SC2148
_repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
"${_repo_dir}/tools/install.sh" || return 1
# shellcheck disable=SC1091
. "${_repo_dir}/tools/activate_python.sh"
export PYTHONUNBUFFERED=1
unset _repo_dir
