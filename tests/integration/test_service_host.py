"""The shared service host (``qtaskdist service``) with static tokens, against real
PostgreSQL and Redis: the extension's API, its refusals and its isolation, on the other
host; and the real ``qtaskdist service`` process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec
from tests.fixtures.service_host import ALICE, BOB, OPS, TOKENS, tokens_file
from tests.integration.test_server_auth import ENDPOINTS


def _rows(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT owner, coalesce(name, '') FROM tasks").fetchall()


async def test_bad_input_is_refused_as_by_the_extension(shared_service, database_url) -> None:
    api = shared_service.api
    code, err = await api("POST", "tasks", raw=b"{not json")
    assert code == 400 and err["error"] == "bad_json"
    code, err = await api("POST", "tasks", raw=b'{"task_type": "sim\\u0000ulate"}')
    assert code in (400, 422) and err["error"] in ("bad_json", "invalid_input"), err
    code, err = await api("POST", "tasks", raw=b'{"shots": NaN}')
    assert code == 400 and err["error"] == "bad_json", err
    code, err = await api("POST", "tasks", body={**simulate_spec(BELL_QASM2), "color": "red"})
    assert code == 422 and err["field"] == "color", err
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, shots=10**9))
    assert code == 422 and err["field"] == "payload.shots", err
    code, err = await api("POST", "tasks", body=simulate_spec("OPENQASM 2.0;\nqreg q[2;\n"))
    assert code == 422 and err["field"] == "circuit" and err.get("line") == 2, err
    code, err = await api("GET", "tasks", params={"limit": "0"})
    assert code == 422 and err["field"] == "limit", err
    status, text = await _declared_only(shared_service.url + "qtaskdist/api/tasks/batch", 10**9)
    assert status == 413 and '"limit":"body_bytes"' in text.replace(" ", ""), text
    assert _rows(database_url) == []


async def _declared_only(url: str, length: int) -> tuple[int, str]:
    """Send only the headers of a POST declaring ``length`` bytes; the answer comes first."""
    u = httpx.URL(url)
    reader, writer = await asyncio.open_connection(u.host, u.port)
    head = (
        f"POST {u.raw_path.decode()} HTTP/1.1\r\nHost: {u.host}\r\n"
        f"Authorization: {ALICE['Authorization']}\r\nContent-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    status_line, _, rest = reply.decode().partition("\r\n")
    return int(status_line.split()[1]), rest.split("\r\n\r\n", 1)[-1]


async def test_owners_are_isolated(shared_service, database_url) -> None:
    api = shared_service.api
    code, start = await api("GET", "events", params={"timeout_s": "0"}, headers=BOB)
    assert code == 200
    code, mine = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, name="alice's"))
    assert code == 201 and mine["owner"] == "alice", mine
    tid = mine["task_id"]
    for method, path in ENDPOINTS:
        if "{id}" in path:
            body = {"name": "bob was here"} if method == "PATCH" else None
            code, err = await api(method, path.format(id=tid), body=body, headers=BOB)
            assert code == 404 and err["error"] == "task_not_found", (method, path, err)
    code, page = await api("GET", "tasks", headers=BOB)
    assert code == 200 and page["tasks"] == []
    # The id's start the tables show resolves for alice on this host too, never for bob.
    code, err = await api("GET", "tasks/resolve", params={"prefix": tid[:8]}, headers=BOB)
    assert code == 404 and err["error"] == "task_not_found", err
    code, got = await api("GET", "tasks/resolve", params={"prefix": tid[:8]})
    assert code == 200 and (got["kind"], got["id"]) == ("task", tid), got
    code, got = await api(
        "GET", "events", params={"after": start["cursor"], "timeout_s": "1"}, headers=BOB
    )
    assert code == 200 and got["events"] == []
    # Naming alice in the body does not make bob alice: 403, nothing written.
    code, err = await api(
        "POST", "tasks", body={**simulate_spec(BELL_QASM2), "owner": "alice"}, headers=BOB
    )
    assert code == 403 and err["field"] == "owner", err
    assert _rows(database_url) == [("alice", "alice's")]
    code, still = await api("GET", f"tasks/{tid}")
    assert code == 200 and still["status"] == "pending" and still["name"] == "alice's"


async def test_missing_forged_or_malformed_tokens_get_403(shared_service, database_url) -> None:
    api = shared_service.api
    tid = str(uuid.uuid4())
    refused = (
        {},
        {"Authorization": ""},
        {"Authorization": "token not-a-known-token-123456"},
        {"Authorization": f"token {TOKENS['alice']}x"},
        {"Authorization": f"basic {TOKENS['alice']}"},
        {"Cookie": f"token={TOKENS['alice']}"},
    )
    for headers in refused:
        for method, path in ENDPOINTS:
            body = simulate_spec(BELL_QASM2) if method in ("POST", "PATCH") else None
            code, err = await api(method, path.format(id=tid), body=body, headers=headers)
            assert code == 403 and err["error"] == "http_403", (headers, method, path, err)
    assert _rows(database_url) == []


async def test_only_operators_see_the_fleet(shared_service) -> None:
    code, mine = await shared_service.api("GET", "health")
    assert code == 200 and mine["database"] == {"ok": True} and "workers" not in mine, mine
    code, ops = await shared_service.api("GET", "health", headers=OPS)
    assert code == 200 and "workers" in ops and "streams" in ops, ops


async def test_the_tokens_file_is_read_again_when_it_changes(shared_service) -> None:
    api, path = shared_service.api, shared_service.tokens
    carol = {"Authorization": "token carol-token-0123456789"}
    assert (await api("GET", "tasks/counts", headers=carol))[0] == 403
    from qtaskdist_server.service_host.tokens import hash_token

    text = path.read_text() + f"{hash_token('carol-token-0123456789')} carol\n"
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert (await api("GET", "tasks/counts", headers=carol))[0] == 200
    path.write_text("\n".join(x for x in text.splitlines() if not x.endswith(" alice")) + "\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert (await api("GET", "tasks/counts", headers=ALICE))[0] == 403  # revoked


async def test_events_stream_as_server_sent_events(shared_service) -> None:
    url = shared_service.url + "qtaskdist/api/events"
    async with httpx.AsyncClient(timeout=10) as http:
        headers = {**ALICE, "Accept": "text/event-stream"}
        async with http.stream("GET", url, headers=headers) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
            lines = r.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            code, made = await shared_service.api("POST", "tasks", body=simulate_spec(BELL_QASM2))
            assert code == 201
            await shared_service.api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
            seen = ""
            while made["task_id"] not in seen:
                seen = await asyncio.wait_for(anext(lines), 10)
            assert '"pending"' in seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_qtaskdist_service_command(database_url, redis_url, tmp_path: Path) -> None:
    """The real process: refuses to start without URLs; serves the API under its prefix
    with static tokens; stops on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    cmd = [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", "service"]
    bare = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "needs DATABASE_URL and REDIS_URL" in bare.stderr

    port = _free_port()
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, JUPYTERHUB_SERVICE_PREFIX="/s/q/")
    args = ["--port", str(port), "--tokens-file", str(tokens_file(tmp_path / "t"))]
    proc = subprocess.Popen([*cmd, *args], env=env)
    try:
        url = f"http://127.0.0.1:{port}/s/q/qtaskdist/api/"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url + "health", headers=ALICE, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "no service"
                time.sleep(0.3)
        assert r.status_code == 200 and r.json()["database"] == {"ok": True}
        r = httpx.post(url + "tasks", json=simulate_spec(BELL_QASM2), headers=BOB, timeout=10)
        assert r.status_code == 201 and r.json()["owner"] == "bob", r.text
        assert httpx.get(url + "tasks", timeout=5).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


async def test_the_hub_unreachable_is_503_auth_unavailable(
    settings, monkeypatch, database_url
) -> None:
    """Hub mode with the hub's API on a closed port: every request with a token is 503
    ``auth_unavailable`` (not 500), with no host or port in it, and nothing is written."""
    from jupyterhub.services.auth import HubOAuth
    from qtaskdist_server.api.service import TaskService
    from qtaskdist_server.service_host.app import ServiceHost, make_app, make_auth
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    from qtaskdist_jupyter.core.config import ServiceSettings

    dead = _free_port()
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{dead}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token-never-used")
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-qtaskdist")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "qtaskdist")
    HubOAuth.clear_instance()
    auth, base = make_auth(ServiceSettings(auth="hub", auth_cache_s=0))
    host = ServiceHost(TaskService.from_settings(settings, pool_size=2), auth)
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(host, base, "/"))
    server.add_sockets([sock])
    try:
        url = f"http://127.0.0.1:{port}/qtaskdist/api/"
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(url + "tasks", json=simulate_spec(BELL_QASM2), headers=ALICE)
            assert r.status_code == 503 and r.json()["error"] == "auth_unavailable", r.text
            assert str(dead) not in r.text
            r = await http.get(url + "health", headers=ALICE)
            assert r.status_code == 503 and r.json()["error"] == "auth_unavailable", r.text
            r = await http.get(url + "health")  # no token: the hub isn't asked
            assert r.status_code == 403
        assert _rows(database_url) == []
    finally:
        server.stop()
        await host.service.close()
        HubOAuth.clear_instance()
