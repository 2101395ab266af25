"""TaskHandle and BatchHandle: what ``Client.submit_*`` and ``%%qtask --out`` give back."""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core import arrays
from qtaskdist_jupyter.core.errors import ApiError, TaskFailed
from qtaskdist_jupyter.core.jsontypes import JsonMap
from qtaskdist_jupyter.core.status import FINISHED, TaskStatus
from qtaskdist_jupyter.kernel.answers import TaskJson
from qtaskdist_jupyter.kernel.display import array_summary_html, failure_message, status_badge
from qtaskdist_jupyter.kernel.lazy_result import LazyResult, lazy_result

if TYPE_CHECKING:  # pragma: no cover
    from qtaskdist_jupyter.kernel.client import Client


class TaskHandle:
    """One task. ``status`` always asks the server; ``row`` is the last row fetched."""

    def __init__(self, client: Client, task_id: str, row: TaskJson | None = None) -> None:
        self.client = client
        self.task_id = str(task_id)
        self.row: TaskJson = row.copy() if row else {}  # {}: not read yet

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r}, status={self.row.get('status')!r})"

    def refresh(self) -> TaskJson:
        self.row = self.client.get(self.task_id)
        return self.row

    @property
    def status(self) -> str:
        return str(self.refresh().get("status"))

    def wait(self, timeout_s: float | None = None, progress: bool = False) -> TaskJson:
        """Until the task is completed, failed or cancelled; returns its row."""

        def check() -> tuple[int, int]:
            return int(self.refresh().get("status") in FINISHED), 1

        self.client.wait_for(
            check,
            lambda e: e["task_id"] == self.task_id,
            timeout_s=timeout_s,
            progress=progress,
            desc=f"task {self.task_id[:8]}",
        )
        return self.row

    def result(self, timeout_s: float | None = None) -> LazyResult:
        """The result dict; TaskFailed for a failed or cancelled task. Large arrays
        (statevector, probabilities, memory) are numpy arrays, downloaded on first access
        (``LazyResult.summary(key)`` describes one without downloading)."""
        row = self.wait(timeout_s)
        status = row.get("status")
        if status != TaskStatus.COMPLETED:
            raise TaskFailed(failure_message(row), task_id=self.task_id, status=status)
        return lazy_result(self.client, self.task_id, row.get("result"))

    def counts(self, timeout_s: float | None = None) -> dict[str, int] | list[dict[str, int]]:
        """Counts; a task with parameter bindings gives one dict per binding."""
        res = self.result(timeout_s)
        if "results" in res:
            return [dict(r.get("counts") or {}) for r in res["results"]]
        return dict(res.get("counts") or {})

    def cancel(self) -> TaskJson:
        self.row = self.client.cancel(self.task_id)
        return self.row

    def retry(self) -> TaskJson:
        self.row = self.client.retry(self.task_id)
        return self.row

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Live in a notebook: the table's front end showing this one task (the widget,
        for Notebook 7, VS Code-style hosts and nbconvert), the bundle JupyterLab draws as
        its live row with no kernel behind it, and the snapshot where neither renders."""
        from qtaskdist_jupyter.kernel.live_view import TASKS_MIME, browser_base_url, tasks_bundle

        # MIME type → its data, and the widget's metadata: opaque to us, shown by the host.
        data: dict[str, object] = {"text/html": self._repr_html_(), "text/plain": repr(self)}
        meta: dict[str, object] = {}
        try:
            from qtaskdist_jupyter.kernel.widget import TaskTable  # heavy: see BatchHandle

            table = TaskTable.for_client(self.client, task_id=self.task_id, page_size=1)
            bundle = super(TaskTable, table)._repr_mimebundle_(**kwargs)
            widget, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
            data = {**widget, **data}
        except Exception:  # noqa: BLE001 - no widget support: the snapshot still shows
            pass
        try:
            base = browser_base_url(self.client.url)
            data[TASKS_MIME] = tasks_bundle(base, task_id=self.task_id, page_size=1)
        except Exception:  # noqa: BLE001 - the snapshot alone still shows
            pass
        return (data, meta) if meta else data

    def header_html(self) -> str:
        """The one line that names the task: id, name, type and status badge."""
        r: TaskJson = self.row or {"status": "?"}
        cells = [
            f"<code>{html.escape(self.task_id)}</code>",
            html.escape(str(r.get("name") or "")),
            html.escape(str(r.get("task_type") or "")),
            status_badge(str(r.get("status"))),
        ]
        return "<b>qtaskdist task</b> " + " · ".join(cells)

    def _repr_html_(self) -> str:
        r: TaskJson = self.row or {"status": "?"}
        extra = ""
        res = r.get("result")
        if r.get("status") in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            extra = f"<div class='qtd-error'>{html.escape(failure_message(r))}</div>"
        elif r.get("status") == TaskStatus.COMPLETED and isinstance(res, dict):
            extra = _result_line(res)
        if r.get("status") == TaskStatus.COMPLETED:
            # Stored arrays are summarized from the row; nothing is downloaded to draw this.
            extra += "".join(array_summary_html(k, v) for k, v in arrays.refs(r.get("result")))
        return "<div class='qtd-handle'>" + self.header_html() + extra + "</div>"


class BatchHandle:
    """Tasks submitted together (one POST tasks/batch), e.g. a parameter sweep."""

    def __init__(self, client: Client, batch_id: str, task_ids: list[str]) -> None:
        self.client = client
        self.batch_id = str(batch_id)
        self.task_ids = [str(t) for t in task_ids]
        self.handles = [TaskHandle(client, t) for t in self.task_ids]
        self._counts: dict[str, int] = {}
        self._counts_at: str | None = None  # when _counts was read (local time)

    def __repr__(self) -> str:
        return f"BatchHandle({self.batch_id!r}, {len(self.task_ids)} tasks)"

    def __len__(self) -> int:
        return len(self.task_ids)

    def __iter__(self) -> Any:
        return iter(self.handles)

    def __getitem__(self, i: int) -> TaskHandle:
        return self.handles[i]

    def status_counts(self) -> dict[str, int]:
        """Tasks of this batch per status (statuses with none left out)."""
        self._counts = {k: v for k, v in self.client.counts(self.batch_id).items() if v}
        self._counts_at = time.strftime("%H:%M:%S")
        return self._counts

    def wait(self, timeout_s: float | None = None, progress: bool = True) -> dict[str, int]:
        """Until every task of the batch is terminal; a tqdm bar in the notebook."""

        def check() -> tuple[int, int]:
            c = self.status_counts()
            return sum(c.get(s, 0) for s in FINISHED), max(len(self.task_ids), sum(c.values()))

        self.client.wait_for(
            check,
            lambda e: e.get("batch_id") == self.batch_id,
            timeout_s=timeout_s,
            progress=progress,
            desc=f"batch {self.batch_id[:8]}",
        )
        return self._counts

    def rows(self) -> list[TaskJson]:
        """All rows, in submission order (one list request per 1,000 tasks)."""
        listed = self.client.tasks(
            batch_id=self.batch_id, limit=len(self.task_ids), include=("result",)
        )
        got = {r.get("task_id"): r for r in listed}
        for h in self.handles:
            h.row = got.get(h.task_id, h.row)
        return [h.row for h in self.handles]

    def results(self, timeout_s: float | None = None) -> list[LazyResult]:
        """One result per task in submission order; TaskFailed names the first failure."""
        self.wait(timeout_s, progress=False)
        rows = self.rows()
        bad = [r for r in rows if r.get("status") != TaskStatus.COMPLETED]
        if bad:
            raise TaskFailed(
                f"{len(bad)} of {len(rows)} tasks did not complete; first: "
                + failure_message(bad[0]),
                batch_id=self.batch_id,
            )
        return [lazy_result(self.client, str(r.get("task_id")), r.get("result")) for r in rows]

    def counts(self, timeout_s: float | None = None) -> list[dict[str, int]]:
        out: list[dict[str, int]] = []
        for res in self.results(timeout_s):
            if "results" in res:
                out += [dict(p.get("counts") or {}) for p in res["results"]]
            else:
                out.append(dict(res.get("counts") or {}))
        return out

    def cancel(self) -> int:
        """Cancel every task not yet finished; returns how many were cancelled."""
        n = 0
        for row in self.rows():
            if row.get("status") in FINISHED:
                continue
            try:
                self.client.cancel(str(row.get("task_id")))
                n += 1
            except ApiError as exc:
                if exc.status != 409:  # finished meanwhile: nothing to cancel
                    raise
        return n

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Live in a notebook: the task table's front end, showing this batch only (with
        its retry buttons); the dated snapshot below where widgets cannot render."""
        try:
            # Here, not at the top: anywidget is heavy, and a plain Client needs none of it.
            from qtaskdist_jupyter.kernel.live_view import TASKS_MIME, tasks_bundle
            from qtaskdist_jupyter.kernel.widget import TaskTable

            table = TaskTable.for_client(self.client, batch_id=self.batch_id, page_size=10)
            bundle = super(TaskTable, table)._repr_mimebundle_(**kwargs)
            data, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
            if not self._counts_at:
                self.status_counts()
            data["text/html"] = self._repr_html_()
            data["text/plain"] = repr(self)
            data[TASKS_MIME] = tasks_bundle(table.base_url, batch_id=self.batch_id, page_size=10)
            return data, meta
        except Exception:  # noqa: BLE001 - no widget support: the snapshot still shows
            return {"text/html": self._repr_html_(), "text/plain": repr(self)}

    def _repr_html_(self) -> str:
        c = self._counts or {}
        total = max(len(self.task_ids), sum(c.values()))
        done = sum(c.get(s, 0) for s in FINISHED)
        pct = 100.0 * done / total if total else 0.0
        parts = " ".join(f"{status_badge(s)} {n}" for s, n in sorted(c.items()) if n)
        # A snapshot, and it says so: the live views are wait(progress=True) and the table.
        when = f"as of {self._counts_at}" if self._counts_at else "not read yet"
        return (
            f"<div class='qtd-batch'><b>qtaskdist batch</b> <code>{html.escape(self.batch_id)}"
            f"</code> · {total} tasks {parts}"
            f"<div style='background:#eee;width:240px;height:8px;border-radius:4px'>"
            f"<div style='background:#43a047;width:{pct:.0f}%;height:8px;border-radius:4px'>"
            f"</div></div><small>{done}/{total} finished, {when}; live: "
            f"<code>.wait()</code> or <code>%qtask table</code></small></div>"
        )


def _result_line(res: JsonMap) -> str:
    """One line on a completed task's result: its counts, bindings or QIR module."""
    counts, results, llvm_ir = res.get("counts"), res.get("results"), res.get("llvm_ir")
    if isinstance(counts, dict) and counts and not arrays.is_ref(counts):
        return f"<div>counts: <code>{html.escape(_short(counts))}</code></div>"
    if isinstance(results, list):
        return f"<div>{len(results)} parameter bindings</div>"
    if isinstance(llvm_ir, str):
        return f"<div>QIR module, {len(llvm_ir)} chars of LLVM IR</div>"
    return ""


def _short(counts: JsonMap, n: int = 8) -> str:
    top = sorted(counts.items(), key=lambda kv: -_number(kv[1]))[:n]
    more = ", …" if len(counts) > n else ""
    return "{" + ", ".join(f"{k!r}: {v}" for k, v in top) + more + "}"


def _number(value: object) -> float:
    """A count as a number (0 for what is none)."""
    return float(value) if isinstance(value, int | float) else 0.0
