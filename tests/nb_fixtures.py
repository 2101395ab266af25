"""A real Jupyter server (with the qtaskdist extension and its local worker) in a subprocess.

Why a subprocess and not jupyter_server's pytest plugin: the plugin serves on the test's
own event loop, and the notebook side (Client, magics, a kernel) is synchronous HTTP; a
sync call from that loop would wait on a server nobody drives. A subprocess is also what
users run: the extension exports QTASKDIST_SERVER_URL to its kernels and writes the
jpserver-*.json file that ``list_running_servers`` discovery reads.

Import with ``from .nb_fixtures import *``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import _admin, _url_for

ENV_NAMES = ("QTASKDIST_SERVER_URL", "QTASKDIST_TOKEN")


@dataclass
class NbServer:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    runtime_dir: Path
    root: Path
    log: Path
    database_url: str
    redis_url: str

    @property
    def api(self) -> str:
        return self.url + "qtaskdist/api/"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def rest(self, method: str, path: str, **kw: Any) -> Any:
        """Plain REST, independent of our Client (to submit tasks 'from elsewhere')."""
        r = httpx.request(method, self.api + path, headers=self.headers, timeout=60, **kw)
        assert r.status_code < 400, (r.status_code, r.text)
        return r.json() if r.content else None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    local_workers: int = 1,
    wait_worker: bool = True,
    timeout_s: float = 90.0,
) -> NbServer:
    tmp.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    cfg_dir, runtime, root = tmp / "cfg", tmp / "runtime", tmp / "root"
    for d in (cfg_dir, runtime, root):
        d.mkdir(exist_ok=True)
    config = {
        "ServerApp": {
            # Only ours: the others cost seconds of startup on a 2-core machine.
            "jpserver_extensions": {
                "qtaskdist_server": True,
                "jupyterlab": False,
                "jupyter_lsp": False,
                "notebook_shim": False,
                "jupyter_server_terminals": False,
            },
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "allow_root": True,
            "root_dir": str(root),
        },
        "IdentityProvider": {"token": token},
        "QtaskdistApp": {
            "database_url": database_url,
            "redis_url": redis_url,
            "local_workers": local_workers,
            "home": str(tmp / "qtd-home"),
        },
    }
    (cfg_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(
        JUPYTER_CONFIG_DIR=str(cfg_dir),
        JUPYTER_RUNTIME_DIR=str(runtime),
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    log = tmp / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server"],
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # one process group: server, workers, kernels
    )
    server = NbServer(
        f"http://127.0.0.1:{port}/", token, proc, runtime, root, log, database_url, redis_url
    )
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            stop_server(server)
            raise AssertionError(f"jupyter server exited {proc.returncode}:\n{server.log_tail()}")
        try:
            r = httpx.get(server.api + "health", headers=server.headers, timeout=5)
            if r.status_code == 200:
                h = r.json()
                if not wait_worker or any(w.get("alive") for w in h.get("workers", [])):
                    return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError(f"server/worker not ready in {timeout_s} s:\n{server.log_tail()}")
        time.sleep(0.3)


def stop_server(server: NbServer) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the extension stops its workers on shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group (kernels)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _new_database(template: str) -> str:
    name = f"qtd_nb_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def _drop_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _redis_db_url() -> str:
    from .conftest import REDIS_DB_NOTEBOOK_SERVER, TEST_REDIS_URL

    # A database of its own: the session server's worker would otherwise consume the
    # messages of per-test fixtures that land on the same database (and they flush it).
    return f"{TEST_REDIS_URL.rstrip('/')}/{REDIS_DB_NOTEBOOK_SERVER}"


_SHARED: dict[str, NbServer] = {}


@pytest.fixture(scope="module")
def nb_server(
    request: pytest.FixtureRequest, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> NbServer:
    """One server + one local worker, shared by every notebook-side test module.

    Starting one costs 10-30 s here, so it is started once per pytest session (on first
    use) and stopped when the session ends.
    """
    if "server" not in _SHARED:
        import redis

        db = _new_database(pg_template)
        redis_url = _redis_db_url()
        rclient = redis.Redis.from_url(redis_url)
        rclient.flushdb()
        server = start_server(tmp_path_factory.mktemp("nbserver"), _url_for(db), redis_url)
        _SHARED["server"] = server

        def cleanup() -> None:
            stop_server(server)
            _drop_database(db)
            rclient.flushdb()
            rclient.close()
            _SHARED.clear()

        request.config.add_cleanup(cleanup)
    return _SHARED["server"]


@pytest.fixture
def nb_client(nb_server: NbServer) -> Iterator[Any]:
    from qtaskdist_jupyter.kernel.client import Client

    with Client(nb_server.url, nb_server.token, timeout_s=30) as c:
        yield c


@pytest.fixture
def server_env(nb_server: NbServer, monkeypatch: pytest.MonkeyPatch) -> NbServer:
    """The environment a kernel started by this server would have."""
    monkeypatch.setenv("QTASKDIST_SERVER_URL", nb_server.url)
    monkeypatch.setenv("QTASKDIST_TOKEN", nb_server.token)
    return nb_server
