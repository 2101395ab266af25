"""The REST API through a real jupyter server, PostgreSQL and Redis: endpoints and error codes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest
import redis
from qtaskdist_server.api.cursors import CURSOR_TOKEN

from qtaskdist_jupyter.core.broker.keys import EVENTS_STREAM, PRIORITY_STREAMS
from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec, wait_for

PRIORITY = PRIORITY_STREAMS["simulate"]


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


async def _create(api, **kw: Any) -> dict[str, Any]:
    code, body = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, **kw))
    assert code == 201, body
    return body


async def test_create_get_and_enqueue(api, sync_redis) -> None:
    task = await _create(api, name="bell", tags=["a"])
    assert task["status"] == "pending" and task["name"] == "bell" and task["tags"] == ["a"]
    uuid.UUID(task["task_id"])
    assert datetime.fromisoformat(task["created_at"]).tzinfo is not None  # ISO with zone
    code, got = await api("GET", f"tasks/{task['task_id']}")
    assert code == 200 and got == task
    assert sync_redis.xlen("stream:simulate") == 0

    code, queued = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    assert code == 201 and queued["status"] == "queued", queued
    # One task of an owner with few: a small submission, on the priority stream.
    (entry,) = sync_redis.xrange(PRIORITY)
    assert str(TaskMessage.decode(entry[1]).task_id) == queued["task_id"]

    code, moved = await api("POST", f"tasks/{task['task_id']}/enqueue")
    assert code == 200 and moved["status"] == "queued"
    assert sync_redis.xlen(PRIORITY) == 2
    code, err = await api("POST", f"tasks/{task['task_id']}/enqueue")
    assert code == 409 and err["error"] == "illegal_transition" and err["status"] == "queued"


async def test_enqueue_task_type_checks(api) -> None:
    task = await _create(api)
    tid = task["task_id"]
    code, err = await api("POST", f"tasks/{tid}/enqueue", params={"task_type": "c_qir_convert"})
    assert code == 422 and err["field"] == "task_type"
    code, err = await api("POST", f"tasks/{tid}/enqueue", params={"task_type": "nope"})
    assert code == 422 and err["error"] == "unknown_task_type"
    code, ok = await api("POST", f"tasks/{tid}/enqueue", params={"task_type": "simulate"})
    assert code == 200 and ok["status"] == "queued"


async def test_list_filters_and_pagination(api) -> None:
    batch = str(uuid.uuid4())
    made = [await _create(api, name=f"t{i}", batch_id=batch) for i in range(5)]
    other = await _create(api, name="other")
    await api("POST", f"tasks/{other['task_id']}/enqueue")

    seen, cursor = [], None
    while True:
        params = {"limit": "2", "batch_id": batch, **({"cursor": cursor} if cursor else {})}
        code, page = await api("GET", "tasks", params=params)
        assert code == 200 and len(page["tasks"]) <= 2
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Newest first, each exactly once.
    assert seen == [t["task_id"] for t in reversed(made)]

    code, page = await api("GET", "tasks", params={"status": "queued,running"})
    assert [t["task_id"] for t in page["tasks"]] == [other["task_id"]]
    code, page = await api("GET", "tasks", params={"name": "t3"})
    assert [t["task_id"] for t in page["tasks"]] == [made[3]["task_id"]]
    code, page = await api("GET", "tasks", params={"task_type": "c_qir_convert"})
    assert code == 200 and page["tasks"] == []

    code, counts = await api("GET", "tasks/counts")
    assert code == 200 and counts["counts"]["pending"] == 5 and counts["counts"]["queued"] == 1
    code, counts = await api("GET", "tasks/counts", params={"batch_id": batch})
    assert counts["counts"] == {
        "pending": 5, "queued": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0
    }  # fmt: skip


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "pending,bogus"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"batch_id": "nope"}, "batch_id"),
        ({"task_type": "nope"}, "task_type"),
    ],
)
async def test_list_rejects_bad_query(api, params: dict[str, str], field: str) -> None:
    code, err = await api("GET", "tasks", params=params)
    assert code == 422 and err["field"] == field, err


async def test_validation_errors_name_the_field(api, database_url) -> None:
    code, err = await api("POST", "tasks", raw=b"{not json")
    assert code == 400 and err["error"] == "bad_json"
    code, err = await api("POST", "tasks", raw=b"[1, 2]")
    assert code == 400 and err["error"] == "bad_json"
    code, err = await api("POST", "tasks", body={"payload": {"circuit": BELL_QASM2}})
    assert code == 422 and err["field"] == "task_type", err
    code, err = await api("POST", "tasks", body={**simulate_spec(BELL_QASM2), "color": "red"})
    assert code == 422 and err["field"] == "color", err
    code, err = await api("POST", "tasks", body={**simulate_spec(BELL_QASM2), "task_type": "x"})
    assert code == 422 and err["error"] == "unknown_task_type", err
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, shots=10**9))
    assert code == 422 and err["field"] == "payload.shots", err
    code, err = await api("POST", "tasks", body=simulate_spec("OPENQASM 2.0;\nqreg q[2;\n"))
    assert code == 422 and err["field"] == "circuit" and err.get("line") == 2, err
    assert _rows(database_url) == 0


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"limits": {"max_payload_bytes": 2000}}}])
async def test_oversized_bodies_get_413(api, database_url) -> None:
    big = BELL_QASM2 + "// " + "x" * 3000 + "\n"
    code, err = await api("POST", "tasks", body=simulate_spec(big))
    assert code == 413 and err["error"] == "payload_too_large", err
    assert err["maximum"] == 2000 and err["field"] == "payload.circuit"
    code, err = await api("POST", "tasks", raw=b" " * 600_000)
    assert code == 413 and err["limit"] == "body_bytes", err
    assert _rows(database_url) == 0


async def test_missing_task_is_404(api) -> None:
    missing = str(uuid.uuid4())
    for method, path in [
        ("GET", f"tasks/{missing}"),
        ("GET", "tasks/not-a-uuid"),
        ("PATCH", f"tasks/{missing}"),
        ("DELETE", f"tasks/{missing}"),
        ("POST", f"tasks/{missing}/enqueue"),
        ("POST", f"tasks/{missing}/cancel"),
        ("POST", f"tasks/{missing}/retry"),
    ]:
        body = {"name": "x"} if method == "PATCH" else None
        code, err = await api(method, path, body=body)
        assert code == 404 and err["error"] == "task_not_found", (method, path, err)


async def test_patch_follows_user_transitions(api) -> None:
    tid = (await _create(api))["task_id"]
    code, t = await api("PATCH", f"tasks/{tid}", body={"name": "renamed", "tags": ["x", "y"]})
    assert code == 200 and t["name"] == "renamed" and t["tags"] == ["x", "y"]
    for target in ("running", "completed", "failed", "pending"):
        code, err = await api("PATCH", f"tasks/{tid}", body={"status": target})
        assert code == 409 and err["status"] == "pending", (target, err)
    code, err = await api("PATCH", f"tasks/{tid}", body={"status": "bogus"})
    assert code == 422 and err["field"] == "status"
    code, err = await api("PATCH", f"tasks/{tid}", body={"max_retries": 99})
    assert code == 422 and err["field"] == "max_retries"

    code, t = await api("PATCH", f"tasks/{tid}", body={"status": "queued"})  # enqueue
    assert code == 200 and t["status"] == "queued"
    code, t = await api("PATCH", f"tasks/{tid}", body={"status": "cancelled"})
    assert code == 200 and t["status"] == "cancelled" and t["finished_at"]
    code, t = await api("PATCH", f"tasks/{tid}", body={"status": "queued", "name": "again"})
    assert code == 200 and t["status"] == "queued" and t["name"] == "again"  # retry
    code, err = await api("PATCH", f"tasks/{tid}", body={"status": "queued"})
    assert code == 409


async def test_cancel_retry_delete(api, sync_redis) -> None:
    tid = (await _create(api, enqueue=True))["task_id"]
    code, err = await api("DELETE", f"tasks/{tid}")
    assert code == 409 and err["status"] == "queued"
    code, err = await api("POST", f"tasks/{tid}/retry")
    assert code == 409
    code, t = await api("POST", f"tasks/{tid}/cancel")
    assert code == 200 and t["status"] == "cancelled"
    code, err = await api("POST", f"tasks/{tid}/cancel")
    assert code == 409 and err["status"] == "cancelled"
    code, t = await api("POST", f"tasks/{tid}/retry")
    assert code == 200 and t["status"] == "queued" and t["retry_count"] == 0
    assert sync_redis.xlen(PRIORITY) == 2  # the retry was enqueued again
    await api("POST", f"tasks/{tid}/cancel")
    code, body = await api("DELETE", f"tasks/{tid}")
    assert code == 204 and body is None
    code, _ = await api("GET", f"tasks/{tid}")
    assert code == 404
    # Live tables learn of the deletion from the events stream.
    last = json.loads(sync_redis.xrevrange("stream:events", count=1)[0][1]["m"])
    assert last["task_id"] == tid and last["status"] == "deleted"


async def test_batch_all_or_nothing(api, sync_redis, database_url) -> None:
    specs = [simulate_spec(BELL_QASM2, name=f"b{i}") for i in range(50)]
    code, out = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 201 and out["count"] == 50 and len(set(out["task_ids"])) == 50, out
    assert sync_redis.xlen("stream:simulate") == 50
    code, counts = await api("GET", "tasks/counts", params={"batch_id": out["batch_id"]})
    assert counts["counts"]["queued"] == 50
    code, first = await api("GET", f"tasks/{out['task_ids'][0]}")
    assert first["name"] == "b0" and first["batch_id"] == out["batch_id"]

    bad = [simulate_spec(BELL_QASM2) for _ in range(5)]
    bad[3]["payload"]["shots"] = -1
    code, err = await api("POST", "tasks/batch", body={"tasks": bad, "enqueue": False})
    assert code == 422 and err["field"] == "tasks.3.payload.shots" and err["index"] == 3, err
    code, err = await api("POST", "tasks/batch", body={"tasks": []})
    assert code == 422 and err["field"] == "tasks"
    assert _rows(database_url) == 50


@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"limits": {"max_batch_tasks": 10}, "max_batch_bytes": 20_000}}]
)
async def test_batch_limits(api, database_url) -> None:
    specs = [simulate_spec(BELL_QASM2) for _ in range(11)]
    code, err = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 422 and err["limit"] == "batch_tasks", err
    code, err = await api("POST", "tasks/batch", raw=b" " * 20_001)
    assert code == 413 and err["maximum"] == 20_000
    assert _rows(database_url) == 0


async def test_events_long_poll_in_order_and_filtered(api, jp_serverapp) -> None:
    code, start = await api("GET", "events", params={"timeout_s": "0"})
    assert code == 200 and start["events"] == []
    tid = (await _create(api))["task_id"]
    await api("POST", f"tasks/{tid}/enqueue")
    await api("POST", f"tasks/{tid}/cancel")
    code, got = await api("GET", "events", params={"after": start["cursor"], "timeout_s": "5"})
    assert code == 200
    assert [(e["task_id"], e["status"]) for e in got["events"]] == [
        (tid, "pending"), (tid, "queued"), (tid, "cancelled")
    ]  # fmt: skip
    assert "owner" not in got["events"][0] and CURSOR_TOKEN.fullmatch(got["cursor"])

    # status= keeps only those events; the cursor still moves past the others.
    params = {"after": start["cursor"], "timeout_s": "5", "status": "cancelled,completed"}
    code, done = await api("GET", "events", params=params)
    assert [(e["task_id"], e["status"]) for e in done["events"]] == [(tid, "cancelled")]
    for c in (done["cursor"], got["cursor"]):  # both resume after the cancel
        code, rest = await api("GET", "events", params={"after": c, "timeout_s": "0"})
        assert rest["events"] == [], rest
    code, err = await api("GET", "events", params={"status": "queued,finished"})
    assert code == 422 and err["field"] == "status" and "'finished'" in err["detail"]

    # Nothing new: the poll blocks for its timeout and hands back a (fresh) token.
    t0 = time.monotonic()
    code, idle = await api("GET", "events", params={"after": got["cursor"], "timeout_s": "0.5"})
    assert idle["events"] == [] and time.monotonic() - t0 >= 0.45
    assert CURSOR_TOKEN.fullmatch(idle["cursor"]) and idle["cursor"] != got["cursor"]

    # A waiting poll wakes as soon as an event lands (XREAD BLOCK, not a sleep loop).
    waiting = asyncio.ensure_future(
        api("GET", "events", params={"after": got["cursor"], "timeout_s": "20"})
    )
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    new = (await _create(api))["task_id"]
    code, woke = await waiting
    assert time.monotonic() - t0 < 3 and [e["task_id"] for e in woke["events"]] == [new]

    code, err = await api("GET", "events", params={"timeout_s": "31"})
    assert code == 422 and err["field"] == "timeout_s"
    code, err = await api("GET", "events", params={"after": "drop table"})
    assert code == 422 and err["field"] == "after"


async def test_events_as_server_sent_events(
    api, jp_serverapp, http_server_client, sync_redis, redis_url
) -> None:
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"{jp_serverapp.base_url}qtaskdist/api/events"
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: token {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.split(b"\r\n")[0].endswith(b" 200 OK") and b"text/event-stream" in head, head
    assert b"connected" in await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)

    tid = (await _create(api))["task_id"]
    await api("POST", f"tasks/{tid}/cancel")
    frames: list[dict[str, str]] = []
    while len(frames) < 2:
        chunk = (await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)).decode()
        fields = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line)
        if "data" in fields:
            frames.append(fields)
    events = [json.loads(f["data"]) for f in frames]
    assert [(e["task_id"], e["status"]) for e in events] == [(tid, "pending"), (tid, "cancelled")]
    assert [f["id"] for f in frames] == [e["id"] for e in events]
    writer.close()
    await writer.wait_closed()

    # The client is gone: the handler stops its blocking XREAD instead of parking it.
    db = int(redis_url.rsplit("/", 1)[1])

    async def no_reader() -> bool:
        clients = await asyncio.to_thread(sync_redis.client_list)
        # flag "b": blocked in a command (the pool's idle connections don't count)
        return not [c for c in clients if "b" in c["flags"] and int(c["db"]) == db]

    await wait_for(no_reader, 5, "the SSE reader to stop")


async def test_health(api, sync_redis) -> None:
    sync_redis.hset(
        "qtaskdist:workers",
        mapping={
            "fresh": f'{{"host": "h1", "pid": 11, "ts": {time.time()}}}',
            "old": f'{{"host": "h2", "pid": 12, "ts": {time.time() - 3600}}}',
        },
    )
    await _create(api, enqueue=True)
    code, h = await api("GET", "health")
    assert code == 200 and h["database"] == {"ok": True} and h["redis"] == {"ok": True}
    workers = {w["name"]: w for w in h["workers"]}
    assert workers["fresh"]["alive"] is True and workers["fresh"]["host"] == "h1"
    assert workers["old"]["alive"] is False and workers["old"]["last_heartbeat_s"] > 3000
    assert h["streams"]["simulate"]["priority_length"] == 1
    assert set(h["streams"]) == {"simulate", "c_qir_convert", "backend_run"}


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"redis_url": "redis://127.0.0.1:1/0"}}])
async def test_redis_down_is_503_and_writes_nothing(api, database_url) -> None:
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    assert code == 503 and err["error"] == "queue_unavailable", err
    specs = [simulate_spec(BELL_QASM2) for _ in range(3)]
    code, err = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 503, err
    assert _rows(database_url) == 0
    # Without enqueue the row is all that was asked for: written, pending, visible.
    code, t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201 and t["status"] == "pending", t
    code, err = await api("POST", f"tasks/{t['task_id']}/enqueue")
    assert code == 503
    code, again = await api("GET", f"tasks/{t['task_id']}")
    assert again["status"] == "pending" and _rows(database_url) == 1
    code, err = await api("GET", "events", params={"timeout_s": "1"})
    assert code == 503
    code, h = await api("GET", "health")
    assert code == 200 and h["database"]["ok"] and h["redis"]["ok"] is False
    assert "unreachable" in h["redis"]["error"]


@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"database_url": "postgresql://postgres@127.0.0.1:1/x"}}]
)
async def test_database_down_is_503(api, redis_url) -> None:
    code, err = await api("GET", "tasks")
    assert code == 503 and err["error"] == "database_unavailable", err
    code, h = await api("GET", "health")
    assert code == 200 and h["database"]["ok"] is False and h["redis"]["ok"] is True
    assert redis.Redis.from_url(redis_url).xlen(EVENTS_STREAM) == 0


async def test_server_start_freezes_its_startup_heap(jp_serverapp) -> None:
    """QtaskdistApp.freeze_gc (default on): full collections skip the start-up heap."""
    import gc

    (ext,) = jp_serverapp.extension_manager.extension_apps["qtaskdist_server"]
    # The hook a started server runs (the in-process test server is never start()ed).
    await ext._start_jupyter_server_extension(jp_serverapp)
    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("path", ["tasks/0/0", "tasks/x/cancel/more", "nope"])
async def test_an_unknown_api_path_is_a_json_404(api, path: str) -> None:
    code, body = await api("GET", path)
    assert code == 404 and isinstance(body, dict), body
    assert body["error"] == "http_404" and "no API route" in body["detail"], body
