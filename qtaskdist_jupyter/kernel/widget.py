"""The live task table: an anywidget whose front end talks to the server extension itself.

Why the browser and not the kernel: a kernel busy with a blocking cell runs no background
work (ipykernel 7 parks asyncio tasks until the next cell, ipykernel#1510), and a kernel
restart kills its threads and comms. The JS in ``static/task_table.js`` lists tasks over
REST and follows ``GET events`` (SSE, long poll as fallback) with the page's own cookies,
so it keeps moving in both cases. The kernel fills ``base_url``, the filters and ``facts``
(the statuses and the sets over them, from :mod:`qtaskdist_jupyter.core.status`: the JS
holds no copy).

:class:`TaskTableState` applies list pages and events with the same rules as the JS
(``static/table_rules.js``); it backs the text and HTML views (``%qtask list``, front ends
without widgets). Both run one table of cases, ``tests/unit/table_rules_cases.json``
(docs/notebook.md, "Two implementations of the table's rules").
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

import anywidget
import traitlets

from qtaskdist_jupyter.core.status import DELETED, FINISHED, STATUSES, TaskStatus
from qtaskdist_jupyter.kernel.answers import EventJson, TaskJson
from qtaskdist_jupyter.kernel.display import STATUS_COLORS, status_badge
from qtaskdist_jupyter.kernel.live_view import FACTS, TASKS_MIME, browser_base_url, tasks_bundle
from qtaskdist_jupyter.kernel.magic_helpers import natural_key

STATIC = Path(__file__).parent / "static"
# One ES module in this order: the rules (no DOM), the detail panel, the table.
ESM_FILES = ("table_rules.js", "table_detail.js", "table_client.js", "task_table.js")
COLUMNS = ("id", "name", "type", "status", "attempt", "queue wait", "run time", "age")


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class TableRow(TypedDict):
    """A task as the table holds it: times in epoch seconds (None: not yet), ``updated``
    the time of the newest event applied (0.0: none)."""

    task_id: str
    name: str | None
    task_type: str | None
    status: str | None
    attempt: int
    batch_id: str | None
    created: float | None
    queued: float | None
    started: float | None
    finished: float | None
    updated: float
    error: str | None


class TaskTableState:
    """Rows keyed by task id; the merge rules the JS front end uses too.

    * a list page row replaces ours unless ours saw a newer event (``updated``);
    * an event always applies (the events stream is totally ordered); ``running`` with
      ``started`` stamps ``started_at`` (without it, the claim, it clears it: the task
      waits), a terminal status stamps ``finished_at``, ``queued`` after a retry clears
      both and restarts the wait (``queued``);
    * an event for an unknown task makes a provisional row and puts the id in ``missing``
      so the feeder fetches the full row once.
    """

    def __init__(self) -> None:
        self.rows: dict[str, TableRow] = {}
        self.missing: set[str] = set()
        self.cursor: str | None = None

    def apply_page(self, tasks: Iterable[TaskJson]) -> None:
        for t in tasks:
            tid = str(t.get("task_id"))
            updated = _epoch(t.get("updated_at")) or 0.0
            cur = self.rows.get(tid)
            self.missing.discard(tid)
            if cur is not None and cur["updated"] > updated:
                # Newer events own status and times; the row still fills what events
                # never carry (name, creation time, error).
                cur["name"] = t.get("name")
                cur["created"] = _epoch(t.get("created_at")) or cur["created"]
                cur["error"] = t.get("error")
                continue
            self.rows[tid] = TableRow(
                task_id=tid,
                name=t.get("name"),
                task_type=t.get("task_type"),
                status=t.get("status"),
                attempt=t.get("attempt") or 0,
                batch_id=t.get("batch_id"),
                created=_epoch(t.get("created_at")),
                queued=_epoch(t.get("queued_at")) or _epoch(t.get("created_at")),
                started=_epoch(t.get("started_at")),
                finished=_epoch(t.get("finished_at")),
                updated=updated,
                error=t.get("error"),
            )

    def apply_event(self, ev: EventJson) -> None:
        tid = str(ev["task_id"])
        if ev.get("status") == DELETED:
            self.rows.pop(tid, None)
            self.missing.discard(tid)
            return
        ts = float(ev.get("ts") or time.time())
        row = self.rows.get(tid)
        if row is None:
            row = self.rows[tid] = TableRow(
                task_id=tid,
                name=None,
                task_type=ev.get("task_type"),
                status=None,
                attempt=0,
                batch_id=ev.get("batch_id"),
                created=ts,
                queued=ts,
                started=None,
                finished=None,
                updated=0.0,
                error=None,
            )
            self.missing.add(tid)
        status = ev.get("status")
        row["status"] = status
        if ev.get("attempt") is not None:
            row["attempt"] = ev["attempt"]
        if status == TaskStatus.RUNNING:
            row["started"], row["finished"] = (ts if ev.get("started") else None), None
        elif status in FINISHED:
            row["finished"] = ts
            started_at = ev.get("started_at")
            if started_at is not None and not row["started"]:
                row["started"] = float(started_at)  # a quick task's start rides here
        else:  # back in the queue (a retry): its wait starts again
            row["started"] = row["finished"] = None
            row["queued"] = ts
        row["updated"] = max(row["updated"], ts)
        if ev.get("id"):
            self.cursor = str(ev["id"])

    def apply_events(self, events: Iterable[EventJson]) -> None:
        for ev in events:
            self.apply_event(ev)

    # ---- views ---------------------------------------------------------------------
    @staticmethod
    def shown_status(r: TableRow) -> str:
        """The status the table shows: ``waiting`` for a claimed task whose job has not
        begun, else the row's."""
        if r["status"] == TaskStatus.RUNNING and not r["started"]:
            return str(FACTS["waiting"])
        return r["status"] or ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s.value: 0 for s in STATUSES}
        out[FACTS["waiting"]] = 0
        for r in self.rows.values():
            shown = self.shown_status(r)
            out[shown] = out.get(shown, 0) + 1
        return out

    def batches(self) -> dict[str, tuple[int, int]]:
        """batch id → (finished, total)."""
        out: dict[str, list[int]] = {}
        for r in self.rows.values():
            if r["batch_id"]:
                c = out.setdefault(r["batch_id"], [0, 0])
                c[0] += r["status"] in FINISHED
                c[1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}

    def visible(
        self,
        status: str = "",
        task_type: str = "",
        batch_id: str = "",
        page: int = 0,
        page_size: int = 50,
        name: str = "",
    ) -> tuple[list[TableRow], int]:
        """One page of the filtered rows, newest first, and how many rows match. ``name``:
        a part of the task's name, in any case; ``batch_id``: a batch id or its start (the
        table shows its first 8 characters)."""
        wanted = {s for s in status.split(",") if s}
        part = name.casefold()
        rows = [
            r
            for r in self.rows.values()
            if (not wanted or r["status"] in wanted)
            and (not task_type or r["task_type"] == task_type)
            and (not batch_id or (r["batch_id"] or "").startswith(batch_id.lower()))
            and (not part or part in (r["name"] or "").casefold())
        ]
        # Newest first; a batch's rows share one creation time, so they follow their
        # names in natural order (sweep[2] before sweep[10]), as in the JS.
        rows.sort(key=lambda r: (natural_key(r["name"] or ""), r["task_id"]))
        rows.sort(key=lambda r: r["created"] or 0.0, reverse=True)
        return rows[page * page_size : (page + 1) * page_size], len(rows)

    @staticmethod
    def cells(r: TableRow, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        created, started, finished = r["created"], r["started"], r["finished"]
        # A pending task (created, never enqueued) is in no queue: no queue wait.
        queued = None if r["status"] == TaskStatus.PENDING else r.get("queued") or created
        wait = (started or (None if r["status"] in FINISHED else now)) if queued else None
        run = (finished or now) if started else None
        return [
            r["task_id"][:8],
            r["name"] or "",
            r["task_type"] or "",
            TaskTableState.shown_status(r),
            str(r["attempt"]),
            _dur(wait - queued) if wait is not None and queued else "",
            _dur(run - started) if run is not None and started else "",
            _dur(now - created) if created else "",
        ]

    def to_text(self, **filters: Any) -> str:
        rows, total = self.visible(**filters)
        lines = ["  ".join(f"{c:<10}" for c in COLUMNS)]
        lines += ["  ".join(f"{c:<10}" for c in self.cells(r)) for r in rows]
        lines.append(
            f"{total} tasks: " + ", ".join(f"{k} {v}" for k, v in self.counts().items() if v)
        )
        return "\n".join(lines)

    def to_html(self, **filters: Any) -> str:
        rows, total = self.visible(**filters)
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = []
        for r in rows:
            cells = self.cells(r)
            cells_html = [html.escape(c) for c in cells]
            cells_html[3] = status_badge(cells[3])
            body.append(
                f"<tr data-task-id='{html.escape(r['task_id'])}'>"
                + "".join(f"<td>{c}</td>" for c in cells_html)
                + "</tr>"
            )
        counts = " ".join(f"{status_badge(s)} {n}" for s, n in self.counts().items() if n)
        return (
            f"<div class='qtd-table'><div>{total} tasks {counts}</div>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    # ---- feeding from the server (kernel side; tests and the HTML fallback) ----------
    def load(self, client: Any, limit: int = 10_000) -> None:
        self.apply_page(client.tasks(limit=limit))

    def follow(self, client: Any, timeout_s: float = 5.0) -> list[EventJson]:
        """One long poll of the events endpoint; fetch rows of unknown tasks once."""
        body = client.events(after=self.cursor, timeout_s=timeout_s)
        self.apply_events(body["events"])
        self.cursor = body["cursor"]
        if self.missing:
            self.apply_page([client.get(t) for t in sorted(self.missing)])
        return list(body["events"])


# A static file's import of another one (``import { h } from "./table_detail.js";``).
_LOCAL_IMPORT = re.compile(r'^import [^;]+ from "\./[a-z_]+\.js";\n', re.MULTILINE)


def esm_bundle() -> str:
    """The table's ES modules as the one module anywidget loads: concatenated in
    dependency order, their imports of each other dropped (the JupyterLab extension
    imports the same files as they are)."""
    return "\n".join(_LOCAL_IMPORT.sub("", (STATIC / n).read_text()) for n in ESM_FILES)


class TaskTable(anywidget.AnyWidget):
    """``%qtask table`` / ``TaskTable.for_client(Client())``: every task, live."""

    _esm = esm_bundle()
    _css = STATIC / "task_table.css"

    base_url = traitlets.Unicode("/").tag(sync=True)
    # Empty by default: in JupyterLab the page's cookie authenticates; a token set here
    # would be saved into the notebook with the widget state.
    token = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    task_type = traitlets.Unicode("").tag(sync=True)
    batch_id = traitlets.Unicode("").tag(sync=True)
    # A task handle's view: this one task, live (its status and times move).
    task_id = traitlets.Unicode("").tag(sync=True)
    page_size = traitlets.Int(50).tag(sync=True)
    poll_timeout_s = traitlets.Float(25.0).tag(sync=True)
    colors = traitlets.Dict({str(s): c for s, c in STATUS_COLORS.items()}).tag(sync=True)
    facts = traitlets.Dict(dict(FACTS)).tag(sync=True)

    _client: Any = None  # the kernel's Client, for the text views (not a trait: not synced)

    @classmethod
    def for_client(cls, client: Any, **kw: Any) -> TaskTable:
        table = cls(base_url=browser_base_url(client.url), **kw)
        table._client = client
        return table

    def snapshot(self) -> TaskTableState:
        """The table's rows as of now, fetched by the kernel (the HTML fallback)."""
        state = TaskTableState()
        client = getattr(self, "_client", None)
        if client is not None:
            state.load(client, limit=200)
        return state

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        try:
            state = self.snapshot()
            filters = {
                "status": self.status,
                "task_type": self.task_type,
                "batch_id": self.batch_id,
            }
            data["text/html"] = state.to_html(**filters)
            data["text/plain"] = state.to_text(**filters)
            data[TASKS_MIME] = tasks_bundle(self.base_url, page_size=self.page_size, **filters)
        except Exception:  # noqa: BLE001 - a fallback must never break the widget view
            pass
        return data, meta
