"""nbval fixture: a real Jupyter server with the qtaskdist extension and a local worker.

Runs against the test PostgreSQL / Redis, found as for tests/ (tests/fixtures/backing.py:
``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``, else 127.0.0.1, else the embedded pair this
session starts and stops): a fresh database ``qtd_nbval_<pid>`` (dropped afterwards) and Redis
database 13, flushed first. A named service that does not answer fails the run loudly.

Why a hook and not a fixture: nbval starts each notebook's kernel in the collector's
``setup()`` (``IPyNbFile.setup``), which pytest runs before any fixture of the first
cell, and the kernel inherits the environment of this pytest process. So the server is
started in ``pytest_runtest_setup`` (tryfirst, i.e. before the collector chain is set up)
of the first notebook cell, and ``QTASKDIST_SERVER_URL`` / ``QTASKDIST_TOKEN`` are put in
``os.environ`` right then. The kernels a Jupyter server starts itself get the same two
variables from the extension (``export_kernel_env``); nbval's kernels get them from here.
Starting at the first notebook cell (not at session start) also means that in a session
that runs ``tests/`` too, the server is not idling through the other tests.

``python notebooks/store_outputs.py`` uses :func:`start_server` to re-execute the
notebooks and store the outputs nbval compares against.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from devtools.demo import server_args, wait_for_worker
from devtools.launcher import ServerProcess
from tests.fixtures.backing import (
    ServicesMissing,
    admin_connection,
    database_url_for,
    redis_url_for,
    stop_embedded,
)

# One per run (pid): two checkouts that share a PostgreSQL never drop each other's.
NB_DATABASE = f"qtd_nbval_{os.getpid()}"
# tests/ rotate over Redis databases 1..11 and keep 12, 14, 15 for their own servers;
# scripts/test.sh runs the notebooks in their own pytest session besides.
NB_REDIS_DB = 13
KERNEL_ENV = ("QTASKDIST_SERVER_URL", "QTASKDIST_TOKEN")
# The stored outputs are those of a run without a qBraid key (04-backend-run says how to
# set one), and a test run must not spend anyone's qBraid credits.
NO_CLOUD_ENV = ("QBRAID_API_KEY",)


def start_server(workdir: Path) -> tuple[ServerProcess, Callable[[], None]]:
    """A fresh database + Redis DB, a server with one local worker; returns (server, stop).

    Drops ``NO_CLOUD_ENV`` from ``os.environ`` first: the server, its worker and the kernels
    all inherit this process's environment.
    """
    for name in NO_CLOUD_ENV:
        os.environ.pop(name, None)
    with admin_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {NB_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {NB_DATABASE}")
    redis_url = redis_url_for(NB_REDIS_DB)
    rclient = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
    try:
        rclient.flushdb()
    except redis.ConnectionError as exc:
        raise ServicesMissing(f"Redis is not reachable at {redis_url}: {exc}") from exc
    env = {
        "DATABASE_URL": database_url_for(NB_DATABASE),
        "REDIS_URL": redis_url,
        "QTASKDIST_LOCAL_WORKERS": "1",
        "QTASKDIST_HOME": str(workdir / "qtd-home"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "MPLBACKEND": "Agg",
    }
    server = ServerProcess(workdir, env=env, extra_args=server_args()).start()

    def stop() -> None:
        server.stop()
        with admin_connection() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NB_DATABASE} WITH (FORCE)")
        rclient.flushdb()
        rclient.close()

    try:
        wait_for_worker(server, timeout_s=90)
    except Exception:
        stop()
        raise
    return server, stop


_STATE: dict[str, Callable[[], None]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "stop" in _STATE or not str(item.path).endswith(".ipynb"):
        return
    workdir = Path(tempfile.mkdtemp(prefix="qtd-nbval-"))
    try:
        server, stop = start_server(workdir)
    except ServicesMissing as exc:
        pytest.exit(f"nbval notebooks need real services: {exc}", returncode=3)
    _STATE["stop"] = stop
    # Before nbval's IPyNbFile.setup starts this notebook's kernel (see the module doc).
    os.environ.update(server.kernel_env())


# The live table's bundle ({api_url, filter, facts}) is JSON, which nbval's sanitizer (strings
# only) cannot mask, and it names its task or batch id: nbval does not compare it, as it does
# not compare widget views. Its shape is unit-tested (tests/unit/test_live_view.py); the
# HTML and text snapshots beside it are compared.
NOT_COMPARED = ("application/vnd.qtaskdist.tasks+json",)


def pytest_itemcollected(item: pytest.Item) -> None:
    notebook = item.parent
    skip = getattr(notebook, "skip_compare", None)
    if skip is not None and not set(NOT_COMPARED) <= set(skip):
        notebook.skip_compare = (*skip, *NOT_COMPARED)  # type: ignore[union-attr]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop = _STATE.pop("stop", None)
    if stop is not None:
        for name in KERNEL_ENV:
            os.environ.pop(name, None)
        stop()
    stop_embedded()
