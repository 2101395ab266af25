"""The live table's model: TaskTableState fed by the real events endpoint, and its rules."""

from __future__ import annotations

import time
import uuid
from typing import Any

from qtaskdist_jupyter.kernel.widget import STATIC, TaskTable, TaskTableState, browser_base_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.notebook import NbServer


def test_state_follows_tasks_submitted_elsewhere(nb_server: NbServer, nb_client: Any) -> None:
    state = TaskTableState()
    state.cursor = nb_client.events(timeout_s=0)["cursor"]  # "from now on", like the JS
    state.load(nb_client)
    before = len(state.rows)
    # Submitted with plain REST, not through the state / widget / our Client.
    specs = [
        {
            "task_type": "simulate",
            "payload": {"circuit": BELL_QASM2, "shots": 20},
            "name": f"ext{i}",
        }
        for i in range(3)
    ]
    body = nb_server.rest("POST", "tasks/batch", json={"tasks": specs, "enqueue": True})
    ids = set(body["task_ids"])
    seen: dict[str, list[str]] = {t: [] for t in ids}
    deadline = time.monotonic() + 120
    # Follow until every task's completed *event* arrived: the one-time fetch of an unknown
    # task's row may already say completed before its running/completed events are read.
    while any("completed" not in seen[t] for t in ids):
        assert time.monotonic() < deadline, {t: state.rows.get(t) for t in ids}
        for ev in state.follow(nb_client, timeout_s=5):
            if ev["task_id"] in seen:
                seen[ev["task_id"]].append(ev["status"])
    for t in ids:
        assert seen[t][0] == "queued" and seen[t][-1] == "completed", seen[t]
        assert "running" in seen[t]
        row = state.rows[t]
        # The unknown task's full row was fetched once: name and times are known.
        assert row["name"].startswith("ext") and row["batch_id"] == body["batch_id"]
        assert row["started"] and row["finished"] and row["finished"] >= row["started"]
    assert not state.missing
    assert len(state.rows) == before + 3
    assert state.batches()[body["batch_id"]] == (3, 3)
    cells = state.cells(state.rows[next(iter(ids))])
    assert cells[3] == "completed" and cells[6].endswith(" s")  # run time shown


def _row(i: int, status: str = "queued", updated: float = 100.0, **kw: Any) -> dict[str, Any]:
    return {
        "task_id": str(uuid.UUID(int=i)),
        "task_type": "simulate",
        "status": status,
        "attempt": 0,
        "batch_id": kw.get("batch_id"),
        "name": kw.get("name"),
        "created_at": 1000.0 + i,
        "updated_at": updated,
        "started_at": None,
        "finished_at": None,
    }


def test_merge_rules() -> None:
    s = TaskTableState()
    s.apply_page([_row(1, updated=100.0)])
    tid = str(uuid.UUID(int=1))
    # The claim: running in the row, but it waits behind the worker's other tasks.
    s.apply_event({"task_id": tid, "status": "running", "attempt": 1, "ts": 190.0, "id": "4-0"})
    assert s.rows[tid]["started"] is None and s.shown_status(s.rows[tid]) == "waiting"
    assert s.counts()["waiting"] == 1 and s.counts()["running"] == 0
    # Its job began.
    ev = {"task_id": tid, "status": "running", "attempt": 1, "ts": 200.0, "id": "5-0"}
    s.apply_event({**ev, "started": True})
    assert s.rows[tid]["status"] == "running" and s.rows[tid]["started"] == 200.0
    assert s.shown_status(s.rows[tid]) == "running" and s.counts()["running"] == 1
    s.apply_page([_row(1, "queued", updated=150.0)])  # a page fetched before the event
    assert s.rows[tid]["status"] == "running"
    s.apply_event({"task_id": tid, "status": "failed", "attempt": 1, "ts": 210.0, "id": "6-0"})
    s.apply_event({"task_id": tid, "status": "queued", "attempt": 1, "ts": 220.0, "id": "7-0"})
    assert s.rows[tid]["status"] == "queued" and s.rows[tid]["started"] is None  # retried
    assert s.cursor == "7-0"
    other = str(uuid.UUID(int=2))
    s.apply_event({"task_id": other, "status": "queued", "task_type": "simulate", "ts": 5.0})
    assert other in s.missing and s.rows[other]["status"] == "queued"
    s.apply_page([_row(2, "queued", updated=6.0, name="late")])
    assert other not in s.missing and s.rows[other]["name"] == "late"


def test_10000_rows_page_fast() -> None:
    s = TaskTableState()
    batch = str(uuid.uuid4())
    s.apply_page([_row(i, batch_id=batch) for i in range(10_000)])
    t0 = time.perf_counter()
    for i in range(0, 10_000, 3):
        s.apply_event({"task_id": str(uuid.UUID(int=i)), "status": "completed", "ts": 2000.0})
    page, total = s.visible(status="completed", page=3, page_size=50)
    html = s.to_html(status="completed", page=3)
    elapsed = time.perf_counter() - t0
    assert total == 3334 and len(page) == 50 and html.count("<tr data-task-id") == 50
    assert page[0]["created"] > page[-1]["created"]  # newest first
    assert s.batches()[batch] == (3334, 10_000)
    assert elapsed < 2.0, elapsed


def test_widget_traits_and_front_end_files() -> None:
    assert browser_base_url("http://127.0.0.1:8888/") == "/"
    assert browser_base_url("https://hub.example/user/ada/") == "/user/ada/"
    # The table module: the view (task_table.js) and its event client (table_client.js).
    js = (STATIC / "task_table.js").read_text() + (STATIC / "table_client.js").read_text()
    for needed in ("EventSource", "X-XSRFToken", "requestAnimationFrame", "export default"):
        assert needed in js
    table = TaskTable(base_url="/user/ada/", status="failed")
    state = table.get_state()
    assert state["base_url"] == "/user/ada/" and state["status"] == "failed"
    assert "qtd-hist" in state["_esm"] and "qtd-status" in state["_css"]


def test_deleted_event_drops_the_row() -> None:
    s = TaskTableState()
    s.apply_page([_row(1, status="completed"), _row(2)])
    s.apply_event({"task_id": str(uuid.UUID(int=1)), "status": "deleted", "ts": 200.0})
    assert set(s.rows) == {str(uuid.UUID(int=2))}
    assert s.counts()["completed"] == 0
