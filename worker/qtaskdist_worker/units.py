"""A worker's tasks in flight and their units: batch keys, the request plan
(``plan_units``, ``split_requests``), time limits; and what it writes when a task ends
(``profile``: profiling meta, retry decision)."""

from __future__ import annotations

import asyncio
import functools
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonValue
from qtaskdist_jupyter.core.kinds import kind_of
from qtaskdist_jupyter.core.queue import TaskRow
from qtaskdist_jupyter.core.task_times import attempt_start

if TYPE_CHECKING:
    from .jobs.protocol import Outcome, UnitTask, Versions

HOST = socket.gethostname()
T = TypeVar("T")


@dataclass(eq=False)
class InFlight:
    """One claimed task: its stream entry and its row at the attempt we own."""

    stream: str
    entry_id: str
    msg: TaskMessage
    row: TaskRow
    # Set when the task is cancelled while it runs; created when its job starts (the
    # simulate / convert tasks of one request share one).
    cancel: asyncio.Event | None = None
    cancelled: bool = False
    # Set while its ``running`` event is being written (see Worker._start).
    announced: asyncio.Future[None] | None = None
    # When its job began (its unit reached a job process), and the write that says so
    # (see starts.Starter): a completion waits for it, so its events keep their order.
    started: datetime | None = None
    start_written: asyncio.Future[None] | None = None

    @functools.cached_property
    def task_id(self) -> uuid.UUID:
        return self.row.task_id

    @functools.cached_property
    def key(self) -> str:
        """The task id as the job processes' replies name it."""
        return str(self.row.task_id)

    @property
    def attempt(self) -> int:
        return self.row.attempt

    def request(self) -> UnitTask:
        return {"task_id": self.key, "payload": self.row.payload}


def profile(
    item: InFlight,
    outcome: Outcome,
    *,
    worker: str,
    run_time_s: float,
    batched_with: int,
    versions: Versions | None,
    result_kind: str,
    now: datetime | None = None,
) -> JsonObject:
    """meta_data keys merged into the row (schemas.ProfilingInfo plus a few extras).
    ``now``: when the attempt ended (one clock reading serves a whole settled batch)."""
    row = item.row
    now = now or datetime.now(UTC)
    started = attempt_start(item.started, row.started_at, now, run_time_s)
    claimed = row.claimed_at
    queued = row.queued_at or row.created_at
    attempts = (row.meta_data or {}).get("attempts")
    prior = list(attempts) if isinstance(attempts, list) else []
    attempt: JsonObject = {
        "attempt": item.attempt,
        "worker": worker,
        "claimed_at": claimed.isoformat() if claimed else None,
        "started_at": started.isoformat(),
        "finished_at": now.isoformat(),
        "outcome": result_kind,
        "error": None if outcome.get("ok") else outcome.get("error"),
    }
    meta: JsonObject = {
        "queue_wait_s": (started - queued).total_seconds() if queued else None,
        "run_time_s": round(run_time_s, 6),
        "worker": worker,
        "host": HOST,
        "batched_with": batched_with,
        "attempts": [*prior, attempt],
    }
    if versions is not None:
        meta["qiskit_version"] = versions["qiskit_version"]
        meta["aer_version"] = versions["aer_version"]
    meta.update(outcome.get("meta") or {})
    if outcome["ok"] is not True and (error_id := outcome.get("error_id")):
        # The traceback is in the worker's log under this id, not in the row.
        meta["error_id"] = error_id
    return meta


# isinstance's classes, built once (the readers below run for every task).
_NUMBER = (int, float)
_CONTAINER = (list, dict)


def _number(doc: JsonMap, key: str, default: float) -> float:
    """``doc[key]`` of a validated payload, a number; ``default`` when absent or empty."""
    value = doc.get(key)
    return value if isinstance(value, _NUMBER) and value else default


def time_limit(payload: JsonMap, default_s: float, cap_s: float) -> float:
    asked = payload.get("time_limit_s")
    return float(min(asked if isinstance(asked, _NUMBER) and asked else default_s, cap_s))


# The largest cost_hint of a task that still shares a unit: a circuit text of a few
# thousand characters at a thousand shots.
SHARE_MAX_COST = 4_000_000


def batch_key(payload: JsonMap) -> tuple[JsonValue, ...] | None:
    """Tasks with equal keys may share a unit (one job call, one time limit); None: a
    unit of its own.

    In a unit each task is an Aer call of its own (see jobs/simulate.py), one after
    another; the request, the reply and the settle are shared. Tasks that may be long or
    large stay alone, so a unit that overruns its limit (and is then run again task by
    task) stays rare: a sweep (it is dealt to a job process of its own), a saved
    statevector or probabilities, and a big circuit or many shots (see cost_hint).
    """
    bindings = payload.get("parameter_bindings")
    if (
        payload.get("statevector")
        or payload.get("probabilities")
        or (isinstance(bindings, _CONTAINER) and len(bindings) > 1)
    ):
        return None
    if cost_hint(payload) > SHARE_MAX_COST:
        return None
    noise = payload.get("noise")
    return (
        payload.get("shots", 1024),
        payload.get("method", "automatic"),
        payload.get("device", "CPU"),
        bool(payload.get("memory", False)),
        *(_rates(noise) if isinstance(noise, dict) else _NO_NOISE),
        payload.get("time_limit_s"),
    )


_NO_NOISE = (0.0, 0.0, 0.0)


def _rates(noise: JsonMap) -> tuple[float, float, float]:
    """A payload's noise spec as its three error rates (0 where not given)."""
    return (
        float(_number(noise, "depolarizing_1q", 0)),
        float(_number(noise, "depolarizing_2q", 0)),
        float(_number(noise, "readout", 0)),
    )


def cost_hint(payload: JsonMap) -> float:
    """A rough, parse-free guess of a task's run time, used only to order a request.

    Longer circuit text, more shots and more bindings mean more work; a saved statevector
    or probabilities hints at a big register. A wrong guess costs latency, never results.
    """
    # Validated: parameter_bindings a list (or, converting, one binding), shots an int.
    bindings, shots = payload.get("parameter_bindings"), payload.get("shots")
    n_points = (len(bindings) if isinstance(bindings, _CONTAINER) else 0) or 1
    heavy = 64 if payload.get("statevector") or payload.get("probabilities") else 1
    circuit = payload.get("circuit")
    chars = len(circuit) if isinstance(circuit, str) else 0
    return chars * max(1, shots if isinstance(shots, _NUMBER) and shots else 1) * n_points * heavy


def plan_units(items: list[InFlight], batch_size: int) -> list[list[InFlight]]:
    """Cut claimed pool tasks into units, each one job call (Aer calls, or one conversion).

    Simulate tasks with equal run options share a unit (see batch_key); every other task
    is a unit of its own. Units come cheapest first (cost_hint), so a slow task runs
    after its request-mates instead of in front of them.
    """
    shared: dict[tuple[JsonValue, ...], list[InFlight]] = {}
    units: list[list[InFlight]] = []
    for item in items:
        shares = kind_of(item.row.task_type).rules.shares_aer_calls
        key = batch_key(item.row.payload) if shares else None
        if key is None:
            units.append([item])
        else:
            shared.setdefault(key, []).append(item)
    for group in shared.values():
        units += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    units.sort(key=lambda unit: sum(cost_hint(i.row.payload) for i in unit))
    return units


def split_requests(units: list[T], parts: int) -> list[list[T]]:
    """Deal units round-robin into at most ``parts`` requests (one per job process), so
    the processes share the work and each request stays cheapest first."""
    n = max(1, min(parts, len(units)))
    return [units[k::n] for k in range(n)] if units else []
