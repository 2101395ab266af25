"""A user's jupyter server under a shared service (``QTASKDIST_SERVICE_URL`` set, as
JupyterHub sets it): it starts nothing, holds no credentials, and forwards the browser's
``qtaskdist/api/*`` requests to the real service with the user's own token (here a
static token standing in for the user's hub token), streaming the answer."""

from __future__ import annotations

import asyncio
import os

import httpx
import psycopg
import pytest

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec
from tests.fixtures.service_host import BOB, TOKENS


@pytest.fixture
def qtd_config(shared_service, monkeypatch) -> dict:
    monkeypatch.setenv("QTASKDIST_SERVICE_URL", shared_service.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKENS["alice"])
    return {}


def _owners(database_url: str) -> list[str]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return [r[0] for r in conn.execute("SELECT owner FROM tasks ORDER BY created_at")]


async def test_the_extension_forwards_with_the_users_token(
    api, jp_serverapp, shared_service, database_url
) -> None:
    (ext,) = jp_serverapp.extension_manager.extension_apps["qtaskdist_server"]
    assert ext.proxy is not None and ext.workers == []
    assert not hasattr(ext, "service") and not hasattr(ext, "settings_obj")
    assert "QTASKDIST_SERVER_URL" not in os.environ and "QTASKDIST_TOKEN" not in os.environ

    code, made = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, name="via server"))
    assert code == 201 and made["owner"] == "alice", made
    code, his = await shared_service.api(
        "POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB
    )
    assert code == 201
    code, err = await api("GET", f"tasks/{his['task_id']}")
    assert code == 404 and err["error"] == "task_not_found"
    code, err = await api("POST", f"tasks/{his['task_id']}/cancel")
    assert code == 404
    code, page = await api("GET", "tasks", params={"limit": "10"})
    assert code == 200 and [t["task_id"] for t in page["tasks"]] == [made["task_id"]]

    # The service's refusals come back as they are, and nothing is written.
    code, err = await api("POST", "tasks", raw=b"{not json")
    assert code == 400 and err["error"] == "bad_json"
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, shots=10**9))
    assert code == 422 and err["field"] == "payload.shots", err
    code, err = await api("POST", "tasks", body={**simulate_spec(BELL_QASM2), "owner": "bob"})
    assert code == 403 and err["field"] == "owner"
    assert _owners(database_url) == ["alice", "bob"]

    # Unauthenticated at the user's server: refused there, nothing forwarded.
    code, _ = await api(
        "POST", "tasks", body=simulate_spec(BELL_QASM2), headers={"Authorization": ""}
    )
    assert code == 403
    assert _owners(database_url) == ["alice", "bob"]


async def test_events_stream_through_the_server(
    api, jp_serverapp, jp_base_url, shared_service
) -> None:
    url = f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}qtaskdist/api/events"
    headers = {
        "Authorization": f"token {jp_serverapp.identity_provider.token}",
        "Accept": "text/event-stream",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", url, headers=headers) as r:
            assert r.status_code == 200, await r.aread()
            assert r.headers["content-type"] == "text/event-stream"
            lines = r.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 10) == "retry: 2000"
            code, made = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
            assert code == 201
            seen = ""
            while made["task_id"] not in seen:
                seen = await asyncio.wait_for(anext(lines), 10)
            assert '"pending"' in seen and '"owner"' not in seen


async def test_a_service_that_does_not_answer_is_503(api, jp_serverapp, database_url) -> None:
    (ext,) = jp_serverapp.extension_manager.extension_apps["qtaskdist_server"]
    ext.proxy.api_url = "http://127.0.0.1:1/qtaskdist/api/"
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 503 and err["error"] == "service_unavailable", err
    assert _owners(database_url) == []
