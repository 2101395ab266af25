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
# The editable install builds the JupyterLab extension (pyproject.toml's jupyter-builder
# hook: npm install, then npm run build in labextension/); the link makes JupyterLab load
# that build in place, so `npm run build` there is all a change to the table needs.
uv pip install --quiet -p .venv/bin/python -e '.[all,dev]'
PATH="$PWD/.venv/bin:$PATH" .venv/bin/jupyter labextension develop --overwrite . >/dev/null
touch "$STAMP"
