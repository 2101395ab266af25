"""A hostile user against the REST API (issue 14): every malformed request is a 4xx that
writes nothing, users' labels are apart from the system's metadata, per-user quotas,
and nothing one user reads tells them about another's tasks or activity."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import psycopg
import pytest
from jupyter_server.auth.authorizer import Authorizer
from qtaskdist_server.api.cursors import CURSOR_TOKEN

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, TwoUserIdentity, simulate_spec

BOB = {"Authorization": f"token {BOB_TOKEN}"}


class AliceIsAdmin(Authorizer):
    """Everyone may use the API; only alice holds ``qtaskdist:admin``."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource == "qtaskdist" and action == "admin":
            return user.username == "alice"
        return True


TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}
ADMIN_ALICE = {
    "ServerApp": {"identity_provider_class": TwoUserIdentity, "authorizer_class": AliceIsAdmin}
}


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def _meta(database_url: str, task_id: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute(
            "SELECT meta_data FROM tasks WHERE task_id = %s", (task_id,)
        ).fetchone()[0]


def _deep(n: int) -> Any:
    v: Any = "x"
    for _ in range(n):
        v = {"a": v}
    return v


def _many(n: int) -> dict[str, int]:
    return {str(i): i for i in range(n)}


_NAMED = json.dumps(simulate_spec(BELL_QASM2, name="x")).encode()
_DIGITS = ', "max_retries": ' + "9" * 5000 + "}"


def _cursor(items: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(items).encode()).decode().rstrip("=")


# ---- labels vs system metadata ---------------------------------------------------------
async def test_labels_are_the_users_and_system_keys_are_refused(api, database_url) -> None:
    spec = simulate_spec(BELL_QASM2, labels={"experiment": "e1", "n": [1, 2]})
    code, t = await api("POST", "tasks", body=spec)
    assert code == 201 and t["labels"] == {"experiment": "e1", "n": [1, 2]}, t
    assert "user" not in t["meta_data"]
    # The older spelling lands in the same place.
    code, old = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, meta_data={"k": 1}))
    assert code == 201 and old["labels"] == {"k": 1} and old["meta_data"] == {}

    rows = _rows(database_url)
    for key in ("provider_job_id", "provider_job", "attempts", "traceback", "seed_simulator"):
        spec = simulate_spec(BELL_QASM2, meta_data={key: "x"})
        code, err = await api("POST", "tasks", body=spec)
        assert code == 422 and err["field"] == f"meta_data.{key}" and key in err["detail"], err
        code, err = await api("POST", "tasks/batch", body={"tasks": [spec]})
        assert code == 422 and key in err["detail"], err
        code, err = await api("PATCH", f"tasks/{t['task_id']}", body={"meta_data": {key: "x"}})
        assert code == 422 and err["field"] == f"meta_data.{key}", err
    assert _rows(database_url) == rows

    # A PATCH replaces the labels and leaves the system's keys as they were.
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE tasks SET meta_data = meta_data || '{\"run_time_s\": 1.5}' WHERE task_id = %s",
            (t["task_id"],),
        )
    code, p = await api("PATCH", f"tasks/{t['task_id']}", body={"labels": {"experiment": "e2"}})
    assert code == 200 and p["labels"] == {"experiment": "e2"}, p
    assert p["meta_data"] == {"run_time_s": 1.5}
    assert _meta(database_url, t["task_id"]) == {"run_time_s": 1.5, "user": {"experiment": "e2"}}
    code, err = await api("PATCH", f"tasks/{t['task_id']}", body={"labels": {}, "meta_data": {}})
    assert code == 422 and err["field"] == "meta_data"


# ---- each input of the "Found" list: a 4xx with {error, detail}, and no row --------
def _nan_bodies() -> list[tuple[str, str]]:
    base = simulate_spec(BELL_QASM2)
    text = json.dumps(base)
    out = []
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        out.append(("labels", text[:-1] + f', "labels": {{"x": {token}}}}}'))
        obs = dict(base, payload={**base["payload"], "observables": ["ZZ"]})
        out.append(("observables", json.dumps(obs).replace('"ZZ"', f'{{"ZZ": {token}}}')))
        b = dict(base, payload={**base["payload"], "parameter_bindings": [{"t": 0}]})
        out.append(("bindings", json.dumps(b).replace('{"t": 0}', f'{{"t": {token}}}')))
        backend = {"task_type": "backend_run", "payload": {"circuit": BELL_QASM2,
                   "device_id": "local", "provider_options": {"seed": 0}}}  # fmt: skip
        out.append(
            ("provider_options", json.dumps(backend).replace('"seed": 0', f'"seed": {token}'))
        )
    return out


async def test_found_bodies_are_4xx_and_write_nothing(api, database_url) -> None:
    bad: list[tuple[str, str | bytes]] = [
        ("10,000 [", "[" * 10_000),
        ("10,000 { ", '{"a":' * 10_000),
        ("deep labels", json.dumps(simulate_spec(BELL_QASM2, labels=_deep(300)))),
        ("deep meta_data", json.dumps(simulate_spec(BELL_QASM2, meta_data=_deep(300)))),
        ("deep, just past the label limit", json.dumps(simulate_spec(BELL_QASM2, labels=_deep(9)))),
        ("NUL in name", json.dumps(simulate_spec(BELL_QASM2, name="a\x00b"))),
        ("NUL in tags", json.dumps(simulate_spec(BELL_QASM2, tags=["a\x00"]))),
        ("NUL in labels", json.dumps(simulate_spec(BELL_QASM2, labels={"k": "\x00"}))),
        ("NUL in a label key", json.dumps(simulate_spec(BELL_QASM2, labels={"\x00": 1}))),
        ("NUL in the circuit", json.dumps(simulate_spec(BELL_QASM2 + "\x00"))),
        ("too many label keys", json.dumps(simulate_spec(BELL_QASM2, labels=_many(300)))),
        ("label too long", json.dumps(simulate_spec(BELL_QASM2, labels={"k": "x" * 20_000}))),
        ("5,000-digit number", json.dumps(simulate_spec(BELL_QASM2))[:-1] + _DIGITS),
        ("not UTF-8", b'{"task_type": "\xff"}'),
        ("lone surrogate escape", json.dumps(simulate_spec(BELL_QASM2, name="\ud800"))),
        ("UTF-8 bytes of a surrogate", _NAMED.replace(b'"x"', b'"\xed\xa0\x80"')),
    ] + _nan_bodies()  # fmt: skip
    for what, body in bad:
        raw = body.encode() if isinstance(body, str) else body
        for path in ("tasks", "tasks/batch"):
            send = raw if path == "tasks" else b'{"tasks": [' + raw + b"]}"
            code, err = await api("POST", path, raw=send)
            assert 400 <= code < 500, (what, path, code, err)
            assert isinstance(err, dict) and set(err) >= {"error", "detail"}, (what, err)
    assert _rows(database_url) == 0
    # The owner's list and reads keep working (nothing half-written is there to break them).
    code, page = await api("GET", "tasks")
    assert code == 200 and page["tasks"] == []

    code, t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    for what, body in [("deep", {"labels": _deep(300)}), ("NUL", {"name": "\x00"}),
                       ("NaN", None)]:  # fmt: skip
        raw = json.dumps(body).encode() if body else b'{"labels": {"x": NaN}}'
        code, err = await api("PATCH", f"tasks/{t['task_id']}", raw=raw)
        assert 400 <= code < 500 and "detail" in err, (what, code, err)
    code, same = await api("GET", f"tasks/{t['task_id']}")
    assert code == 200 and same["labels"] == {} and same["name"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "²"},
        {"limit": "٣"},
        {"limit": "9" * 5000},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"cursor": _cursor(["2024-01-01T00:00:00+00:00", 5])},
        {"cursor": _cursor(["2024-01-01T00:00:00+00:00", None])},
        {"cursor": _cursor([1, "00000000-0000-0000-0000-000000000000"])},
        {"cursor": _cursor(["2024-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"])},
        {"cursor": _cursor({"a": "b", "c": "d"})},
        {"cursor": "!!!"},
        {"cursor": "x" * 5000},
        {"batch_id": "not-a-uuid"},
        {"status": "queued,\u00b2"},
        {"task_type": "x" * 5000},
        {"name": "x" * 300},
    ],
)
async def test_found_list_params_are_422(api, params) -> None:
    code, err = await api("GET", "tasks", params=params)
    assert code == 422 and err["field"] == next(iter(params)), (params, err)


@pytest.mark.parametrize(
    "after",
    ["99999999999999999999999", "18446744073709551616-0", "0-18446744073709551616", "١٢٣-0",
     "12\u00b3", "1-", "-1", "1-2-3", "c" + "0" * 31, "$x"],
)  # fmt: skip
async def test_found_events_params_are_422_on_both_paths(api, after) -> None:
    code, err = await api("GET", "events", params={"after": after, "timeout_s": "0"})
    assert code == 422 and err["field"] == "after", (after, err)
    for accept in ("application/json", "text/event-stream"):
        # Header bytes are the UTF-8 of the text, as a browser would send them.
        headers = {"Last-Event-ID": after.encode().decode("latin-1"), "Accept": accept}
        code, err = await api("GET", "events", params={"timeout_s": "0"}, headers=headers)
        assert code == 422 and err["field"] == "after", (after, accept, err)
    for timeout in ("nan", "inf", "1e3", "٣", "-1", "1" * 5000, "31"):
        code, err = await api("GET", "events", params={"timeout_s": timeout})
        assert code == 422 and err["field"] == "timeout_s", (timeout, err)
    code, ok = await api("GET", "events", params={"after": "18446744073709551615-0",
                                                  "timeout_s": "0"})  # fmt: skip
    assert code == 200 and ok["events"] == []


# ---- quotas ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "qtd_config", [{**TWO_USERS, "QtaskdistApp": {"max_active_tasks": 3, "max_event_streams": 1}}]
)
async def test_per_user_quotas(api, database_url) -> None:
    for _ in range(2):
        code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
        assert code == 201
    code, err = await api("POST", "tasks/batch", body={"tasks": [simulate_spec(BELL_QASM2)] * 2})
    assert code == 429 and err["error"] == "quota_exceeded" and err["limit"] == "active_tasks"
    code, last = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201
    resp_code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert resp_code == 429 and "3" in err["detail"], err
    assert _rows(database_url) == 3
    # Bob has his own quota.
    code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
    assert code == 201
    # A finished task frees its place; a retry takes one again (both ways of asking).
    await api("POST", f"tasks/{last['task_id']}/cancel")
    code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201
    code, err = await api("POST", f"tasks/{last['task_id']}/retry")
    assert code == 429 and err["limit"] == "active_tasks", err
    code, err = await api("PATCH", f"tasks/{last['task_id']}", body={"status": "queued"})
    assert code == 429 and err["limit"] == "active_tasks", err

    # One open events request per owner here: a second of alice's is 429, bob's is not.
    first = asyncio.ensure_future(api("GET", "events", params={"timeout_s": "2"}))
    await asyncio.sleep(0.5)
    code, err = await api("GET", "events", params={"timeout_s": "0"})
    assert code == 429 and err["limit"] == "event_streams", err
    code, _ = await api("GET", "events", params={"timeout_s": "0"}, headers=BOB)
    assert code == 200
    assert (await first)[0] == 200
    code, _ = await api("GET", "events", params={"timeout_s": "0"})
    assert code == 200  # released when the first one ended


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"max_active_tasks": 1}}])
async def test_429_carries_retry_after(jp_fetch) -> None:
    body = json.dumps(simulate_spec(BELL_QASM2))
    first = await jp_fetch("qtaskdist", "api", "tasks", method="POST", body=body)
    assert first.code == 201
    second = await jp_fetch(
        "qtaskdist", "api", "tasks", method="POST", body=body, raise_error=False
    )
    assert second.code == 429 and int(second.headers["Retry-After"]) > 0


async def test_large_body_is_refused_before_it_is_read(
    jp_serverapp, http_server_client, database_url
) -> None:
    """A 150 MB Content-Length: the 413 comes back before any of the body is sent."""
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"{jp_serverapp.base_url}qtaskdist/api/tasks"
    size = 150 * 1024 * 1024
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: token {token}\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    # No body byte is sent: the answer can only come from the headers.
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.split(b"\r\n")[0].startswith(b"HTTP/1.1 413 "), head
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    err = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    assert err["error"] == "payload_too_large" and err["value"] == size
    writer.close()
    assert _rows(database_url) == 0


# ---- what one user learns about another -----------------------------------------------
@pytest.mark.parametrize("qtd_config", [ADMIN_ALICE])
async def test_health_internals_only_for_admins(api, sync_redis) -> None:
    sync_redis.hset("qtaskdist:workers", "w1", f'{{"host": "h1", "pid": 11, "ts": {time.time()}}}')
    for _ in range(3):
        await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    code, admin = await api("GET", "health")
    assert code == 200 and admin["workers"][0]["host"] == "h1"
    assert admin["streams"]["simulate"]["priority_length"] == 3
    assert admin["queue"] == {"pending": 0, "queued": 3, "running": 0}
    code, user = await api("GET", "health", headers=BOB)
    assert code == 200 and set(user) == {"database", "redis", "queue"}, user
    assert user["database"] == {"ok": True} and user["redis"] == {"ok": True}
    assert user["queue"] == {"pending": 0, "queued": 0, "running": 0}  # his own: none
    assert "h1" not in json.dumps(user)


@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_events_cursor_reveals_nothing_about_others(api) -> None:
    code, quiet = await api("GET", "events", params={"timeout_s": "0"}, headers=BOB)
    code, again = await api("GET", "events", params={"after": quiet["cursor"], "timeout_s": "0"},
                            headers=BOB)  # fmt: skip
    busy_before = again["cursor"]
    for _ in range(5):  # alice is busy
        await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    code, after = await api("GET", "events", params={"after": busy_before, "timeout_s": "0.3"},
                            headers=BOB)  # fmt: skip
    assert code == 200 and after["events"] == []
    # Tokens, not stream ids: nothing to compare, and a fresh one either way.
    for c in (quiet["cursor"], busy_before, after["cursor"]):
        assert CURSOR_TOKEN.fullmatch(c), c
    assert len({quiet["cursor"], busy_before, after["cursor"]}) == 3
    # Alice can't read from bob's position (a token is its owner's only), and bob's cursor
    # still resumes exactly: his next event, and nothing of alice's.
    code, mine = await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
    code, got = await api("GET", "events", params={"after": after["cursor"], "timeout_s": "2"},
                          headers=BOB)  # fmt: skip
    assert [(e["task_id"], e["status"]) for e in got["events"]] == [(mine["task_id"], "pending")]
    assert CURSOR_TOKEN.fullmatch(got["cursor"]), got  # a token even after his own
    code, hers = await api("GET", "events", params={"after": after["cursor"], "timeout_s": "0"})
    assert code == 422 and hers["field"] == "after", hers  # sealed for bob: refused


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"redis_url": "redis://127.0.0.1:1/0"}}])
async def test_503_texts_name_no_host(api) -> None:
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    assert code == 503 and "127.0.0.1" not in json.dumps(err) and ":1" not in json.dumps(err)
    code, h = await api("GET", "health")
    assert h["redis"]["ok"] is False and "127.0.0.1" not in json.dumps(h), h


async def test_sse_keepalives_keep_time_not_other_users_events(service) -> None:
    """Bob's stream stays silent while alice's events arrive; its keepalive comes on
    schedule. (The seed wrote one after each burst of anyone's events.)"""
    from qtaskdist_server.events import EventTail, stream_sse

    tail = await EventTail.start(service.queue, "bob", None)
    writes: list[tuple[float, str]] = []
    t0 = time.monotonic()

    async def write(chunk: str) -> None:
        writes.append((time.monotonic() - t0, chunk))

    closed = asyncio.Event()
    streaming = asyncio.ensure_future(stream_sse(tail, write, closed, keepalive_s=1.5))
    alice = {"task_type": "simulate", "owner": "alice", "attempt": 0, "batch_id": None}
    for i in range(5):
        await asyncio.sleep(0.2)
        await service.broker.emit([{**alice, "task_id": f"t{i}", "status": "pending"}])
    await asyncio.sleep(2.0 - (time.monotonic() - t0))
    closed.set()
    await asyncio.wait_for(streaming, 5)
    assert [c for _t, c in writes][0].startswith("retry:")
    keepalives = [t for t, c in writes if "keepalive" in c]
    assert len(writes) == 2 and len(keepalives) == 1, writes
    assert 1.4 <= keepalives[0] <= 1.9, writes


@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_small_submissions_go_to_the_priority_stream(api, sync_redis) -> None:
    from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS

    normal, priority = STREAMS["simulate"], PRIORITY_STREAMS["simulate"]
    batch = {"tasks": [simulate_spec(BELL_QASM2)] * 20}
    code, _ = await api("POST", "tasks/batch", body=batch, headers=BOB)
    assert code == 201 and sync_redis.xlen(normal) == 20 and sync_redis.xlen(priority) == 0
    code, _ = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    assert code == 201 and sync_redis.xlen(priority) == 1  # alice has one task: small
    # Bob, with 20 active, can't jump his own queue by sending tasks one at a time.
    code, _ = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True),
                        headers=BOB)  # fmt: skip
    assert code == 201 and sync_redis.xlen(normal) == 21 and sync_redis.xlen(priority) == 1
