#!/usr/bin/env bash
# The test command (README Quick start, and what .ci/run runs): install, then every test
# against real PostgreSQL / Redis (TEST_DATABASE_URL / TEST_REDIS_URL, default 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider -ra "$@"
