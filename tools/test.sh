#!/usr/bin/env bash
# Runs the linter and the test suite, installing tools/venv first when it is missing or out of
# date. Extra arguments go to pytest, e.g. `tools/test.sh test/espnet2_stacking/stacking -x`;
# `tools/test.sh -m "not slow"` is the quick selection (no end-to-end or multi-process tests).
set -euo pipefail
repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"${repo_dir}/tools/install.sh"
cd "${repo_dir}"
tools/venv/bin/ruff check . || { echo "ruff found problems (see above); tools/venv/bin/ruff check --fix . mends some" >&2; exit 1; }
exec tools/venv/bin/python -m pytest "$@"
