#!/usr/bin/env bash
# The main job on the embedded default: install, start embedded PostgreSQL + Valkey and a
# local worker, run a Bell circuit through the queue, print the task table and counts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/qtaskdist demo "$@"
