"""The plain functions behind ``%qtask``: no Magics instance, no shell state.

Option parsing (``--sweep``, ``--noise``), the check on a Python cell's value, the one
line a user sees for an error, and text+HTML output. Apart from :mod:`.magics` so that
file holds only the command class.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Sequence
from typing import Any, TypedDict

from IPython.core.error import UsageError
from IPython.display import display

from qtaskdist_jupyter.core.errors import (
    ApiError,
    QtaskdistError,
    ServerNotFound,
    ServiceUnavailable,
    WaitTimeout,
)
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.kernel.answers import HealthJson, TaskJson


class TaskOptions(TypedDict):
    """A cell's options that every task type takes (``Client.submit``'s)."""

    name: str | None
    tags: list[str] | None
    max_retries: int | None


def is_qasm_text(body: str) -> bool:
    """Whether a cell body is OpenQASM text (sent as it is), not Python: its first line of
    code, past blank lines and ``//`` comments, starts with ``OPENQASM``."""
    code = [
        ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("//")
    ]
    return bool(code) and code[0].upper().startswith("OPENQASM")


def user_message(exc: QtaskdistError, cell_offset: int | None = None) -> str:
    """One line for the user; the API's code decides the prefix. ``cell_offset``: the
    lines above the circuit text in its cell (1: the ``%%qtask`` line), when the cell's
    body was sent as it is; a circuit error then names its line in the cell too."""
    if isinstance(exc, ApiError) and exc.error in ("invalid_circuit", "include_refused"):
        line = exc.detail.get("line")
        where = f"; line {line + cell_offset} of the cell" if line and cell_offset else ""
        return f"invalid circuit: {exc.message}{where}"
    if isinstance(exc, ServerNotFound):
        return f"no qtaskdist server: {exc.message}"
    if isinstance(exc, ServiceUnavailable):
        return exc.message if "down" in exc.message else f"services down: {exc.message}"
    if isinstance(exc, WaitTimeout):
        return exc.message
    return exc.message


def parse_sweep(specs: list[str]) -> list[dict[str, float]]:
    """``NAME=START:STOP:NUM`` (NUM points, both ends included); several → their product."""
    axes: list[tuple[str, list[float]]] = []
    for spec in specs:
        name, eq, rng = spec.partition("=")
        parts = rng.split(":")
        if not eq or not name.isidentifier() or len(parts) != 3:
            raise UsageError(
                f"--sweep {spec!r}: expected NAME=START:STOP:NUM, e.g. theta=0:3.14:16"
            )
        try:
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise UsageError(
                f"--sweep {spec!r}: START and STOP are numbers, NUM an integer"
            ) from None
        if num < 1:
            raise UsageError(f"--sweep {spec!r}: NUM must be at least 1")
        step = (stop - start) / (num - 1) if num > 1 else 0.0
        axes.append((name, [start + i * step for i in range(num)]))
    return [
        dict(zip([a[0] for a in axes], combo, strict=True))
        for combo in itertools.product(*[a[1] for a in axes])
    ]


def parse_noise(text: str | None) -> dict[str, float] | None:
    """``P`` (both gate errors) or ``P1,P2[,READOUT]``."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--noise {text!r}: expected P or P1,P2[,READOUT]") from None
    if len(vals) == 1:
        vals = [vals[0], vals[0]]
    if len(vals) > 3:
        raise UsageError(f"--noise {text!r}: at most three numbers")
    return dict(
        zip(("depolarizing_1q", "depolarizing_2q", "readout")[: len(vals)], vals, strict=True)
    )


def check_circuits(value: Any) -> Any:
    from qiskit import QuantumCircuit  # heavy: only once a cell is a Python cell

    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(c, (QuantumCircuit, str)) for c in items):
        got = type(value).__name__
        raise UsageError(
            f"the cell's last expression is a {got}; expected a QuantumCircuit or a list of them"
        )
    return list(items) if isinstance(value, (list, tuple)) else value


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def emit(text: str, html: str) -> None:
    display({"text/plain": text, "text/html": html}, raw=True)


def retried_line(task_id: str, row: TaskJson) -> str:
    """What ``%qtask retry`` prints. A row's ``attempt`` counts the attempts begun so far
    (a claim adds one), so a task queued again waits for attempt ``attempt + 1``."""
    if row.get("status") == "queued":
        return f"task {task_id}: queued for attempt {int(row.get('attempt') or 0) + 1}"
    return f"task {task_id}: {row.get('status')} (attempt {row.get('attempt')})"


def natural_key(text: str) -> list[str | int]:
    """Names in natural order: sweep[2] before sweep[10]."""
    # re.split with a group alternates text and digits, so positions never mix types.
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(re.split(r"(\d+)", text))]


def binding_order(rows: Sequence[TaskJson]) -> list[str]:
    """A batch's task ids in binding order. Its tasks share one creation time, so the
    listing's order (newest first, then by task id) says nothing of it; their names do
    (``sweep[0]``, ``sweep[1]``, …)."""
    ids = [(natural_key(str(r.get("name") or "")), str(r.get("task_id"))) for r in rows]
    return [task_id for _, task_id in sorted(ids)]


def status_lines(url: str, h: HealthJson) -> list[str]:
    """What ``%qtask status`` prints from ``GET health`` (``h``) of the server at ``url``:
    the services, your active tasks and, for an operator, the workers and streams."""
    lines = [f"server:   {url}"]
    for svc in ("database", "redis"):
        s = h.get(svc) or {}
        lines.append(
            f"{svc + ':':9} {'ok' if s.get('ok') else 'DOWN (' + str(s.get('error')) + ')'}"
        )
    q = h.get("queue")
    if q:
        active = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING)
        lines.append("yours:    " + ", ".join(f"{q.get(s)} {s}" for s in active))
    if "workers" not in h:  # fleet internals are for qtaskdist:admin users only
        return lines
    alive = [w for w in h.get("workers", []) if w.get("alive")]
    lines.append(f"workers:  {len(alive)} alive of {len(h.get('workers', []))}")
    for w in h.get("workers", []):
        state = "alive" if w.get("alive") else "STALE"
        lines.append(
            f"  {w.get('name')} on {w.get('host')} pid {w.get('pid')}: {state}, "
            f"heartbeat {w.get('last_heartbeat_s')} s ago"
        )
    for ttype, s in sorted((h.get("streams") or {}).items()):
        lines.append(f"queue {ttype}: length {s.get('length')}, pending {s.get('pending')}")
    return lines
