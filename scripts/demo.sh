#!/usr/bin/env bash
# The main job on the embedded default: install into .venv, then `python -m devtools.demo`: a Jupyter
# server with the extension (embedded PostgreSQL + Valkey and a local worker when
# DATABASE_URL / REDIS_URL are unset) runs notebooks/01-quickstart.ipynb headless and
# prints the task table and the counts. Options go to `devtools/demo.py` (--timeout-s S).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/qtaskdist ]; then
  echo "==> updating the install in .venv"
else
  echo "==> installing qtaskdist-jupyter and its dependencies into .venv (first time: a few minutes)"
fi
scripts/bootstrap.sh
exec .venv/bin/python -m devtools.demo "$@"
