#!/usr/bin/env bash
# From a fresh clone: install (scripts/bootstrap.sh, quick when done), then run the
# benchmarks with the project's virtualenv. Arguments go to `python -m benchmarks`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m benchmarks "$@"
