"""The types of JSON documents as they cross a process boundary (HTTP bodies, JSONB columns,
stream fields, pipe messages), for annotations only.

A value whose keys are known is a ``TypedDict`` or a frozen dataclass where it is built (a
row in :mod:`qtaskdist_jupyter.core.store.shapes`, an event in
:mod:`qtaskdist_jupyter.core.queue.rows`). What is left is a document no one here shapes: a
task's payload before its kind's model reads it, a result, a user's ``meta_data``. Those are
:data:`JsonObject`, which a type checker keeps honest (a value must be narrowed before use),
unlike ``dict[str, Any]``.

- :data:`JsonObject` for a document one builds or returns (``dict``, invariant);
- :data:`JsonMap` for one only read (``Mapping``, covariant: a ``dict[str, int]`` passes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

JsonScalar: TypeAlias = "str | int | float | bool | None"
JsonValue: TypeAlias = "JsonScalar | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"
JsonMap: TypeAlias = "Mapping[str, JsonValue]"

__all__ = ["JsonMap", "JsonObject", "JsonScalar", "JsonValue"]
