"""The API with real worker processes: events in order, health of a killed worker, and
the embedded bootstrap (embedded PostgreSQL + Valkey, local workers) end to end."""

from __future__ import annotations

import asyncio
import signal
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec, start_worker, wait_for


async def _status(api, tid: str) -> str:
    code, t = await api("GET", f"tasks/{tid}")
    assert code == 200, t
    return t["status"]


async def test_events_follow_a_real_worker_in_order(
    api, database_url, redis_url, worker_procs
) -> None:
    code, start = await api("GET", "events", params={"timeout_s": "0"})
    code, task = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, shots=100))
    tid = task["task_id"]
    code, _ = await api("POST", f"tasks/{tid}/enqueue")
    assert code == 200
    proc = start_worker(database_url, redis_url, "--burst", "--name", "burst-1")
    worker_procs.append(proc)

    async def done() -> bool:
        return await _status(api, tid) in ("completed", "failed")

    await wait_for(done, 60, "the worker to finish the task")
    code, final = await api("GET", f"tasks/{tid}")
    assert final["status"] == "completed", final
    assert sum(final["result"]["counts"].values()) == 100

    events: list[dict[str, Any]] = []
    cursor = start["cursor"]
    while not events or events[-1]["status"] != "completed":
        code, got = await api("GET", "events", params={"after": cursor, "timeout_s": "5"})
        assert code == 200 and got["events"], events
        events += got["events"]
        cursor = got["cursor"]
    mine = [(e["status"], bool(e.get("started"))) for e in events if e["task_id"] == tid]
    # The claim's running event, then its job's start if that was written before the job
    # ended (a quick task's start rides on its completion: docs/message-format.md, "Times"),
    # always before the completion.
    claimed = [("pending", False), ("queued", False), ("running", False)]
    assert mine in (
        claimed + [("completed", False)],
        claimed + [("running", True), ("completed", False)],
    )
    claimed_at, started_at, finished_at = (
        datetime.fromisoformat(final[k]) for k in ("claimed_at", "started_at", "finished_at")
    )
    assert claimed_at <= started_at <= finished_at, final
    # The completion carries the attempt's start, which a quick task's table needs.
    (completed,) = [e for e in events if e["task_id"] == tid and e["status"] == "completed"]
    assert completed["started_at"] == pytest.approx(started_at.timestamp(), abs=1e-5)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert await asyncio.to_thread(proc.wait, 30) == 0  # --burst exits once drained


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"worker_stale_s": 2.0}}])
async def test_health_reports_a_killed_worker_as_gone(
    api, database_url, redis_url, worker_procs
) -> None:
    proc = start_worker(
        database_url, redis_url, "--name", "doomed", "--visibility-timeout-s", "1.5"
    )
    worker_procs.append(proc)

    async def doomed(alive: bool) -> dict[str, Any] | None:
        code, h = await api("GET", "health")
        w = {w["name"]: w for w in h["workers"]}.get("doomed")
        return w if w and w["alive"] is alive else None

    w = await wait_for(lambda: doomed(True), 30, "the worker's first heartbeat")
    assert w["pid"] == proc.pid and w["last_heartbeat_s"] < 2
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)
    gone = await wait_for(lambda: doomed(False), 10, "the killed worker to be reported dead")
    assert gone["last_heartbeat_s"] >= 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "qtd_config",
    [{"QtaskdistApp": {"database_url": None, "redis_url": None, "local_workers": 1}}],
)
async def test_embedded_bootstrap_runs_a_task_end_to_end(
    api, jp_serverapp, monkeypatch, tmp_path: Path
) -> None:
    ext = jp_serverapp.extension_manager.extension_points["qtaskdist_server"].app
    assert ext.settings_obj.database_url and ext.settings_obj.redis_url
    assert ext.settings_obj.home == tmp_path / "qtd-home"
    assert len(ext.workers) == 1 and ext.workers[0].poll() is None
    code, task = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    assert code == 201, task

    async def done() -> bool:
        return await _status(api, task["task_id"]) in ("completed", "failed")

    await wait_for(done, 90, "the local worker to finish the task")
    code, final = await api("GET", f"tasks/{task['task_id']}")
    assert final["status"] == "completed", final
    code, h = await api("GET", "health")
    assert [w["alive"] for w in h["workers"]] == [True]

    # Shutdown stops what this server started: its worker and the embedded services.
    worker = ext.workers[0]
    await ext.stop_extension()
    assert worker.poll() is not None
    from tests.fixtures.backing import embedded_running

    assert not embedded_running(ext.settings_obj.home)
