#!/usr/bin/env bash
# The paper's method comparison on downstream tasks, from a fresh clone in one command:
# installs tools/venv on first use, prepares the bench's teacher and its dump
# (bench/prepare_teacher.sh) when missing, distils one student per method and seed, and trains
# the demo recipe's PR and SID heads on each (bench/downstream_methods.py, whose options this
# passes on; README "The methods on downstream tasks" quotes its output):
#   bench/downstream_methods.sh [--seeds 0,1] [--tasks pr,sid] [--methods ...] [--name NAME] ...
# Writes bench/results/<name>.json, <name>_seed<S>.json and <name>_RESULTS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/install.sh
exec tools/venv/bin/python bench/downstream_methods.py "$@"
