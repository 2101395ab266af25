"""Task list rows with the fields each view needs (``GET tasks?include=…&fields=…``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, create_model

from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.schemas import TaskRead

ALL_FIELDS = tuple(TaskRead.model_fields)
# A list row leaves out what grows with the task: its circuit and its result.
HEAVY_FIELDS = ("payload", "result")
SUMMARY_FIELDS = tuple(f for f in ALL_FIELDS if f not in HEAVY_FIELDS)

# TaskRead with every field optional: a list row holds only the fields asked for. It keeps
# TaskRead's validators, so labels come out of meta_data as they do for one task.
TaskFields: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "TaskFields",
    __base__=TaskRead,
    **{n: (f.annotation | None, None) for n, f in TaskRead.model_fields.items()},
)
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


def row_json(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    picked = {k: row[k] for k in columns_for(fields) if k in row}
    out = TaskFields.model_validate(picked).model_dump(mode="json")
    return {k: out[k] for k in fields if k in out}
