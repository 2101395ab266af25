"""What a worker writes when a task ends: result or error, profiling, retry decision."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qtaskdist_jupyter.streams import TaskMessage

HOST = socket.gethostname()


@dataclass(eq=False)
class InFlight:
    """One claimed task: its stream entry and its row at the attempt we own."""

    stream: str
    entry_id: str
    msg: TaskMessage
    row: dict[str, Any]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    # Set while its ``running`` event is being written (see Worker._start).
    announced: asyncio.Future[None] | None = None

    @property
    def task_id(self) -> uuid.UUID:
        return self.row["task_id"]

    @property
    def attempt(self) -> int:
        return int(self.row["attempt"])

    def request(self) -> dict[str, Any]:
        return {"task_id": str(self.task_id), "payload": self.row["payload"]}


def profile(
    item: InFlight,
    outcome: dict[str, Any],
    *,
    worker: str,
    run_time_s: float,
    batched_with: int,
    versions: dict[str, Any],
    result_kind: str,
) -> dict[str, Any]:
    """meta_data keys merged into the row (schemas.ProfilingInfo plus a few extras)."""
    row = item.row
    now = datetime.now(UTC)
    started = row.get("started_at")
    created = row.get("created_at")
    prior = list((row.get("meta_data") or {}).get("attempts") or [])
    attempt = {
        "attempt": item.attempt,
        "worker": worker,
        "started_at": started.isoformat() if started else None,
        "finished_at": now.isoformat(),
        "outcome": result_kind,
        "error": None if outcome.get("ok") else outcome.get("error"),
    }
    meta: dict[str, Any] = {
        "queue_wait_s": (started - created).total_seconds() if started and created else None,
        "run_time_s": round(run_time_s, 6),
        "worker": worker,
        "host": HOST,
        "batched_with": batched_with,
        "attempts": [*prior, attempt],
        **{k: v for k, v in versions.items() if k in ("qiskit_version", "aer_version")},
    }
    meta.update(outcome.get("meta") or {})
    if not outcome.get("ok") and outcome.get("error_id"):
        # The traceback is in the worker's log under this id, not in the row.
        meta["error_id"] = outcome["error_id"]
    return meta


def time_limit(payload: dict[str, Any], default_s: float, cap_s: float) -> float:
    asked = payload.get("time_limit_s")
    return float(min(asked if asked else default_s, cap_s))


def batch_key(payload: dict[str, Any]) -> tuple[Any, ...] | None:
    """Tasks with equal keys may share one Aer call; None: run alone.

    Seeded tasks run alone so their counts equal a single in-process run (Aer gives
    experiment i of a list run seed+2113·i). Saves and bindings change the experiment
    list, so those run alone too.
    """
    if (
        payload.get("seed") is not None
        or payload.get("statevector")
        or payload.get("probabilities")
        or payload.get("observables")
        or payload.get("parameter_bindings") is not None
    ):
        return None
    noise = payload.get("noise") or {}
    return (
        payload.get("shots", 1024),
        payload.get("method", "automatic"),
        payload.get("device", "CPU"),
        bool(payload.get("memory", False)),
        float(noise.get("depolarizing_1q", 0)),
        float(noise.get("depolarizing_2q", 0)),
        float(noise.get("readout", 0)),
        payload.get("time_limit_s"),
    )
