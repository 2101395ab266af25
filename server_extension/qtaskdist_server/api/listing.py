"""Task list rows with the fields each view needs (``GET tasks?include=…&fields=…``), and
the byte bound of a page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, create_model

from qtaskdist_jupyter.core.errors import InvalidInput, LimitExceeded
from qtaskdist_jupyter.core.schemas import TaskRead
from qtaskdist_jupyter.core.store.store import TaskStore

ALL_FIELDS = tuple(TaskRead.model_fields)
# A list row leaves out what grows with the task: its circuit and its result.
HEAVY_FIELDS = ("payload", "result")
SUMMARY_FIELDS = tuple(f for f in ALL_FIELDS if f not in HEAVY_FIELDS)


# TaskRead with every field optional: a list row holds only the fields asked for. It keeps
# TaskRead's validators, so labels come out of meta_data as they do for one task.
def _optional(annotation: Any) -> Any:
    return annotation | None


_OPTIONAL_FIELDS: dict[str, Any] = {
    n: (_optional(f.annotation), None) for n, f in TaskRead.model_fields.items()
}
TaskFields: type[BaseModel] = create_model("TaskFields", __base__=TaskRead, **_OPTIONAL_FIELDS)
# Fields that are not columns of their own, and the column each is read from.
_READ_FROM = {"labels": "meta_data"}


def _names(raw: str | None, field: str) -> list[str]:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    bad = [n for n in names if n not in ALL_FIELDS]
    if bad:
        raise InvalidInput(
            f"{field}={bad[0]!r} is not a task field; fields are {', '.join(ALL_FIELDS)}",
            field=field,
        )
    return names


def list_fields(include: str | None, fields: str | None) -> list[str]:
    """The fields of each list row: ``fields`` (exactly those, plus task_id), else the
    summary fields plus ``include`` (e.g. ``include=result``)."""
    chosen = _names(fields, "fields")
    if chosen:
        return ["task_id", *(f for f in chosen if f != "task_id")]
    return [*SUMMARY_FIELDS, *(f for f in _names(include, "include") if f in HEAVY_FIELDS)]


def columns_for(fields: list[str]) -> list[str]:
    """The table columns that hold ``fields``."""
    return list(dict.fromkeys(_READ_FROM.get(f, f) for f in fields))


def row_json(row: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    picked = {k: row[k] for k in columns_for(fields) if k in row}
    out = TaskFields.model_validate(picked).model_dump(mode="json")
    return {k: out[k] for k in fields if k in out}


# Fields whose size no schema bounds (a result, a worker's error, labels and the
# system's meta_data with its attempts): a page with any of them is measured first.
UNBOUNDED_FIELDS = frozenset({*HEAVY_FIELDS, "error", "meta_data", "labels"})
# What one field adds to a row's JSON besides its value: quotes, colon, comma.
_FIELD_OVERHEAD_BYTES = 6


def measured(fields: list[str]) -> bool:
    """Whether a page of these fields must be measured before it is read."""
    return any(f in UNBOUNDED_FIELDS for f in fields)


def row_overhead(fields: list[str]) -> int:
    """The bytes a row's JSON adds to its values: the field names and punctuation."""
    return sum(len(f) + _FIELD_OVERHEAD_BYTES for f in fields)


async def check_page(store: TaskStore, fields: list[str], cap: int, **filters: Any) -> None:
    """LimitExceeded (422, naming the ``limit`` that fits) when the page ``filters`` select
    would carry more than ``cap`` bytes: every field sent counts (each as its column's
    text, measured by the database before any of it is read, plus its name)."""
    columns = [_READ_FROM.get(f, f) for f in fields]  # labels count as their meta_data
    overhead = row_overhead(fields)
    sizes = [n + overhead for n in await store.page_bytes(columns, **filters)]
    fit = page_fit(sizes, cap)
    if fit < len(sizes):
        raise LimitExceeded(
            f"the {len(sizes)} rows asked for carry {sum(sizes)} bytes of "
            f"{', '.join(fields)}; a page may carry {cap}: ask for limit={fit} "
            "(and follow next_cursor)",
            limit="page_bytes",
            field="limit",
            value=filters.get("limit"),
            maximum=fit,
            max_page_bytes=cap,
        )


def page_fit(sizes: list[int], max_bytes: int) -> int:
    """How many of a page's rows, in order, fit in ``max_bytes`` (their ``sizes``); never
    fewer than one, so a client can always move on (one row is what GET tasks/{id} sends)."""
    total, fit = 0, 0
    for size in sizes:
        total += size
        if total > max_bytes:
            break
        fit += 1
    return max(fit, 1)
