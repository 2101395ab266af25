#!/usr/bin/env bash
# Create .venv and install the project with every extra, and JupyterHub's proxy
# (configurable-http-proxy, pinned in scripts/proxy/package-lock.json) into .venv/proxy.
# Idempotent, and instant when neither pyproject.toml nor the lock file has changed since
# the last install (the Python install is editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
STAMP=.venv/.qtaskdist-installed
PROXY=.venv/proxy

install_python() {
  if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
    return
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
  # --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is
  # set (as on the CI machine) no process would ever cache one, so every test process, job
  # process, server and kernel compiled qiskit, Aer and Jupyter from source at each start
  # (the unit loop: 28.7 s in a fresh clone against 17.2 s with a compiled venv).
  uv pip install --quiet --compile-bytecode -p .venv/bin/python -e '.[all,dev]'
  PATH="$PWD/.venv/bin:$PATH" .venv/bin/jupyter labextension develop --overwrite . >/dev/null
  touch "$STAMP"
}

# The proxy JupyterHub starts (the hub tests, docs/deploy-jupyterhub.md): the reference
# implementation from npm, which streams responses (server-sent events, large results).
# Without Node.js, or when npm fails, it is skipped with a warning: only the hub tests and
# hub deployments need it (the rig then says what is missing).
install_proxy() {
  if [ -x "$PROXY/node_modules/.bin/configurable-http-proxy" ] \
    && [ "$PROXY/.installed" -nt scripts/proxy/package-lock.json ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: WARNING: npm not found; the JupyterHub tests need Node.js (>= 20) for configurable-http-proxy" >&2
    return
  fi
  mkdir -p "$PROXY"
  cp scripts/proxy/package.json scripts/proxy/package-lock.json "$PROXY/"
  if ! npm ci --prefix "$PROXY" --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "bootstrap: WARNING: npm could not install configurable-http-proxy; the JupyterHub tests will fail" >&2
    return
  fi
  ln -sf ../proxy/node_modules/.bin/configurable-http-proxy .venv/bin/configurable-http-proxy
  touch "$PROXY/.installed"
}

install_python
install_proxy
