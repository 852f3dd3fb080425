#!/usr/bin/env bash
# Runs the test suite, installing tools/venv first when it is missing or out of date.
# Extra arguments go to pytest, e.g. `tools/test.sh test/espnet2_stacking/stacking -x`.
set -euo pipefail
repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"${repo_dir}/tools/install.sh"
cd "${repo_dir}"
exec tools/venv/bin/python -m pytest "$@"
