#!/usr/bin/env bash
# Create .venv and install the project with every extra. Idempotent, and instant when
# pyproject.toml has not changed since the last install (the install is editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
STAMP=.venv/.qtaskdist-installed
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
if [ ! -x .venv/bin/python ]; then
  uv venv --quiet --python "$PY" .venv
fi
uv pip install --quiet -p .venv/bin/python -e '.[all,dev]'
touch "$STAMP"
