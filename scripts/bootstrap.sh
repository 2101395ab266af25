#!/usr/bin/env bash
# Create .venv and install the project with every extra. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
if [ ! -x .venv/bin/python ]; then
  uv venv --quiet --python "$PY" .venv
fi
uv pip install --quiet -p .venv/bin/python -e '.[all,dev]'
