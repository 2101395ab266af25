"""Pydantic's refusals as the error tree's: :func:`validation_error` names the first bad
field, and a value over a limit (a validator's :class:`OverLimit`, or pydantic's own
``max_length`` / ``le`` bounds) becomes LimitExceeded naming the ``limit`` and ``maximum``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from qtaskdist_jupyter.core.errors import InvalidInput, LimitExceeded


class OverLimit(ValueError):
    """A validator's refusal of a value over a limit: :func:`validation_error` answers it
    as LimitExceeded (422 ``limit_exceeded``) naming the field, ``limit`` and ``maximum``."""

    def __init__(self, message: str, *, limit: str, maximum: Any, value: Any = None) -> None:
        super().__init__(message)
        self.limit, self.maximum, self.value = limit, maximum, value


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """Map pydantic's error list onto InvalidInput naming the first bad field."""
    first = exc.errors()[0]
    field = _field_path(((prefix,) if prefix else ()) + tuple(first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    bound = _bound(first)
    if bound is not None:
        limit, maximum, value = bound
        return LimitExceeded(
            f"{field}: {msg}", limit=limit, maximum=maximum, value=value, field=field
        )
    return InvalidInput(f"{field}: {msg}", field=field, errors=len(exc.errors()))


# pydantic's own bound checks (Field(max_length=…, le=…)): the limit each names.
_PYDANTIC_BOUNDS = {
    "too_long": "max_length",
    "string_too_long": "max_length",
    "less_than_equal": "le",
    "less_than": "lt",
}


def _bound(error: Any) -> tuple[str, Any, Any] | None:
    """(limit, maximum, value) when a pydantic error is a value over a limit."""
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, OverLimit):
        return cause.limit, cause.maximum, cause.value
    key = _PYDANTIC_BOUNDS.get(error["type"])
    if key is None or key not in ctx:
        return None
    limit = "max_length" if key == "max_length" else "max_value"
    return limit, ctx[key], None
