"""Fixtures and helpers for the server extension tests (jupyter_server's pytest plugin).

Import with ``from .server_fixtures import *`` in a test module; the plugin itself is
loaded by tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
import pytest_asyncio
from jupyter_server.auth.identity import IdentityProvider, User
from qtaskdist_server.application import SERVER_URL_ENV, TOKEN_ENV
from traitlets.config import Config

BOB_TOKEN = "bob-secret-token"
Api = Callable[..., Awaitable[tuple[int, Any]]]


class TwoUserIdentity(IdentityProvider):
    """The server's own token is alice; BOB_TOKEN is bob; anything else is nobody."""

    async def get_user(self, handler: Any) -> User | None:  # type: ignore[override]
        token = self.get_token(handler)
        name = {self.token: "alice", BOB_TOKEN: "bob"}.get(token) if token else None
        if name is None:
            return None
        handler._token_authenticated = True
        return User(name)


@pytest.fixture
def qtd_config() -> dict[str, Any]:
    """Extra QtaskdistApp / ServerApp config; override in a module to change it."""
    return {}


@pytest.fixture
def jp_server_config(
    database_url: str, redis_url: str, tmp_path: Any, qtd_config: dict[str, Any], monkeypatch
) -> Config:
    # The extension exports these for kernels; monkeypatch restores them afterwards.
    for name in (SERVER_URL_ENV, TOKEN_ENV, "QTASKDIST_LOCAL_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    server = {"jpserver_extensions": {"qtaskdist_server": True}}
    server.update(qtd_config.get("ServerApp", {}))
    app = {
        "database_url": database_url,
        "redis_url": redis_url,
        "local_workers": 0,
        "home": str(tmp_path / "qtd-home"),
    }
    app.update(qtd_config.get("QtaskdistApp", {}))
    return Config({"ServerApp": server, "QtaskdistApp": app})


@pytest.fixture
def api(jp_fetch) -> Api:
    """``await api("POST", "tasks", body={...}, headers=..., params=...)`` → (status, json)."""

    async def call(
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = b""
        resp = await jp_fetch(
            "qtaskdist",
            "api",
            *path.split("/"),
            method=method,
            body=data,
            headers=headers,
            params=params,
            raise_error=False,
            **kw,
        )
        text = resp.body.decode() if resp.body else ""
        try:
            return resp.code, json.loads(text) if text else None
        except ValueError:
            return resp.code, text

    return call


def simulate_spec(circuit: str, **kw: Any) -> dict[str, Any]:
    payload = {"circuit": circuit, "shots": kw.pop("shots", 64), "seed": 7}
    payload.update(kw.pop("payload", {}))
    return {"task_type": "simulate", "payload": payload, **kw}


def set_cookies(resp: Any) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in resp.headers.get_list("Set-Cookie"):
        c = SimpleCookie()
        c.load(header)
        jar.update({k: m.value for k, m in c.items()})
    return jar


def start_worker(database_url: str, redis_url: str, *args: str) -> subprocess.Popen[bytes]:
    """A real worker process (``python -m qtaskdist_worker``)."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    return subprocess.Popen([sys.executable, "-m", "qtaskdist_worker", *args], env=env)


@pytest.fixture
def worker_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def wait_for(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def jp_asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """Run the Jupyter server on the loop pytest-asyncio runs the test on.

    pytest_jupyter makes its own loop; under pytest-asyncio (asyncio_mode=auto) the test
    coroutine runs on another one, and a request would wait on a loop nobody drives.
    """
    yield asyncio.get_running_loop()
