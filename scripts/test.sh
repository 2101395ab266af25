#!/usr/bin/env bash
# The test command (README Quick start, and what .ci/run runs): install, then every test
# against real PostgreSQL / Redis (TEST_DATABASE_URL / TEST_REDIS_URL, default 127.0.0.1).
#
#   scripts/test.sh              tests/ , then the example notebooks under nbval
#   scripts/test.sh ARGS...      one pytest run with ARGS (e.g. tests/test_store.py -x)
#
# The notebooks run in a pytest session of their own: their server (notebooks/conftest.py)
# owns Redis database 13, which the tests/ fixtures may otherwise flush while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYTHONUNBUFFERED=1
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider -ra)
NBVAL=(--nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg)
if [ "$#" -gt 0 ]; then
  exec "${PYTEST[@]}" "${NBVAL[@]}" "$@"
fi
"${PYTEST[@]}" tests
exec "${PYTEST[@]}" "${NBVAL[@]}" notebooks
