"""The REST API's answers as the kernel reads them: one ``TypedDict`` per shape, and the
checks :class:`.client.Client` runs on each answer where it decodes it.

A check confirms that the answer is a JSON object and that every key it declares, when
present, holds a value of its type (one level deep; a task's ``result``, ``payload``,
``labels`` and ``meta_data`` are documents no one here shapes: :data:`JsonObject`). An
answer that fails it is not the qtaskdist API this client knows: :class:`ApiError`
``unexpected_answer``. Times are ISO 8601 text, ids text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict, TypeGuard

from qtaskdist_jupyter.core.errors import ApiError
from qtaskdist_jupyter.core.jsontypes import JsonObject, JsonValue


class TaskJson(TypedDict, total=False):
    """A task as ``GET tasks/{id}`` answers it (and a submit, cancel or retry). A row of
    ``GET tasks`` holds the same fields less ``payload`` and ``result`` unless asked for."""

    task_id: str
    task_type: str
    status: str
    payload: JsonObject
    result: JsonObject | None
    error: str | None
    retry_count: int
    max_retries: int
    created_at: str
    updated_at: str
    scheduled_for: str | None
    meta_data: JsonObject
    labels: JsonObject
    owner: str
    attempt: int
    batch_id: str | None
    name: str | None
    tags: list[str]
    queued_at: str | None
    claimed_at: str | None
    started_at: str | None
    finished_at: str | None
    worker: str | None


class EventJson(TypedDict):
    """One event of ``GET events`` (docs/message-format.md); ``id`` is its stream id."""

    task_id: str
    status: str
    task_type: str
    attempt: int
    batch_id: str | None
    ts: float
    id: str
    started: NotRequired[bool]  # a running event whose job began (else: the claim)
    started_at: NotRequired[float]  # an ended attempt's start (epoch seconds)


class EventsPage(TypedDict):
    """One long poll of ``GET events``: pass ``cursor`` back as ``after``."""

    events: list[EventJson]
    cursor: str


class TasksPage(TypedDict):
    """One page of ``GET tasks``, newest first; ``next_cursor`` None on the last."""

    tasks: list[TaskJson]
    next_cursor: str | None


class BatchAnswer(TypedDict):
    """``POST tasks/batch``: the batch and its tasks' ids in submission order."""

    batch_id: str
    task_ids: list[str]
    count: int


class CountsAnswer(TypedDict):
    """``GET tasks/counts``: your tasks (or a batch's) per status."""

    counts: dict[str, int]


class Resolved(TypedDict):
    """``GET tasks/resolve``: the one task or batch of yours whose id starts so."""

    kind: str
    id: str


class ServiceHealth(TypedDict, total=False):
    ok: bool
    error: str | None


class WorkerHealth(TypedDict, total=False):
    name: str
    host: str | None
    pid: int | None
    last_heartbeat_s: float
    alive: bool


class StreamHealth(TypedDict, total=False):
    length: int
    pending: int


class HealthJson(TypedDict, total=False):
    """``GET health``: the services, your active tasks per status, and for an operator
    the workers and the streams per task type."""

    database: ServiceHealth
    redis: ServiceHealth
    queue: dict[str, int]
    workers: list[WorkerHealth]
    streams: dict[str, StreamHealth]


# The types of each shape's keys, as ``isinstance`` takes them (int counts for a float).
_Types = tuple[type, ...]
_STR, _INT, _BOOL, _DICT, _LIST = (str,), (int,), (bool,), (dict,), (list,)
_NUM = (int, float)
_STR_OR_NONE, _DICT_OR_NONE = (str, type(None)), (dict, type(None))
_TASK: dict[str, _Types] = {
    **dict.fromkeys(("task_id", "task_type", "status", "owner", "created_at", "updated_at"), _STR),
    **dict.fromkeys(("payload", "meta_data", "labels"), _DICT),
    "result": _DICT_OR_NONE,
    **dict.fromkeys(("retry_count", "max_retries", "attempt"), _INT),
    "tags": _LIST,
    **dict.fromkeys(
        ("error", "scheduled_for", "batch_id", "name", "worker", "queued_at", "claimed_at"),
        _STR_OR_NONE,
    ),
    **dict.fromkeys(("started_at", "finished_at"), _STR_OR_NONE),
}
_EVENT: dict[str, _Types] = {
    **dict.fromkeys(("task_id", "status", "task_type", "id"), _STR),
    "attempt": _INT,
    "batch_id": _STR_OR_NONE,
    "ts": _NUM,
    "started": _BOOL,
    "started_at": _NUM,
}
_EVENT_KEYS = ("task_id", "status", "task_type", "attempt", "batch_id", "ts", "id")
_HEALTH: dict[str, _Types] = {
    **dict.fromkeys(("database", "redis", "queue", "streams"), _DICT),
    "workers": _LIST,
}


def _fits(value: object, types: Mapping[str, _Types], required: tuple[str, ...] = ()) -> bool:
    """A JSON object holding every ``required`` key, each key of ``types`` it holds of
    its type."""
    if not isinstance(value, dict):
        return False
    return all(k in value for k in required) and all(
        isinstance(value[k], t) for k, t in types.items() if k in value
    )


def is_task(value: object) -> TypeGuard[TaskJson]:
    return _fits(value, _TASK, ("task_id",))


def is_event(value: object) -> TypeGuard[EventJson]:
    return _fits(value, _EVENT, _EVENT_KEYS)


def is_events_page(value: object) -> TypeGuard[EventsPage]:
    keys = {"events": _LIST, "cursor": _STR}
    return (
        _fits(value, keys, ("events", "cursor"))
        and isinstance(value, dict)
        and all(is_event(e) for e in value["events"])
    )


def is_tasks_page(value: object) -> TypeGuard[TasksPage]:
    keys = {"tasks": _LIST, "next_cursor": _STR_OR_NONE}
    return (
        _fits(value, keys, ("tasks",))
        and isinstance(value, dict)
        and all(is_task(t) for t in value["tasks"])
    )


def is_batch_answer(value: object) -> TypeGuard[BatchAnswer]:
    keys = {"batch_id": _STR, "task_ids": _LIST, "count": _INT}
    return _fits(value, keys, ("batch_id", "task_ids"))


def is_resolved(value: object) -> TypeGuard[Resolved]:
    return _fits(value, {"kind": _STR, "id": _STR}, ("kind", "id"))


def is_health(value: object) -> TypeGuard[HealthJson]:
    return _fits(value, _HEALTH)


def is_counts(value: object) -> TypeGuard[CountsAnswer]:
    return (
        _fits(value, {"counts": _DICT}, ("counts",))
        and isinstance(value, dict)
        and all(isinstance(n, int) for n in value["counts"].values())
    )


def unexpected(what: str, status: int, value: JsonValue) -> ApiError:
    """The error for an answer to ``what`` (``"GET tasks"``) that is not of its shape."""
    got = f"keys {sorted(value)[:12]}" if isinstance(value, dict) else type(value).__name__
    return ApiError(
        f"{what} answered a document this client does not know ({got}): is the server's "
        "qtaskdist the same version as this kernel's?",
        status=status,
        error="unexpected_answer",
    )
