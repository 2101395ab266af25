"""Query and header parameters of the REST API: one strict parser (pydantic models).

Every parameter arrives as text. Numbers are ASCII digits only (``int("²")`` and
``int("٣")`` are not numbers here), bounded before they are converted, so no parameter
can reach PostgreSQL or Redis in a shape they would refuse with a 500.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any, Literal, TypedDict, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qtaskdist_jupyter.core.errors import InvalidInput, UnknownTaskType
from qtaskdist_jupyter.core.models import TaskStatus
from qtaskdist_jupyter.core.schemas import PAYLOAD_MODELS, OverLimit, validation_error
from qtaskdist_jupyter.core.short_ids import parse_id_start
from qtaskdist_jupyter.core.status import DELETED
from qtaskdist_jupyter.core.store.engine import decode_cursor
from qtaskdist_server.api.cursors import CURSOR_TOKEN
from qtaskdist_server.api.listing import list_fields

_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?", re.ASCII)
_U64 = 2**64 - 1
# How GET tasks/{id}/result/{name} may send an array: .npy bytes, or its stored zstd frame.
ARRAY_ENCODINGS = ("npy", "zstd")


def stream_id(value: str) -> str:
    """A Redis stream id ``ms[-seq]`` with both parts inside Redis's 64-bit range."""
    if not _STREAM_ID.fullmatch(value) or any(int(p) > _U64 for p in value.split("-")):
        raise ValueError(f"{value[:40]!r} is not a stream id like 1712345678901-0")
    return value


def _statuses(raw: str, known: set[str]) -> frozenset[str]:
    wanted = frozenset(s for s in raw.split(",") if s)
    bad = sorted(wanted - known)
    if bad:
        raise ValueError(f"{bad[0][:40]!r} is not one of {sorted(known)}")
    return wanted


class Params(BaseModel):
    # Unknown parameters (a cache buster, _xsrf) are ignored, as web APIs do.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ListFilters(TypedDict):
    """What TaskStore.list (and page_bytes) select and page by: GET tasks' parameters but
    the fields of its rows."""

    status: frozenset[str] | None
    task_type: str | None
    batch_id: uuid.UUID | None
    name: str | None
    limit: int
    cursor: str | None


class ListParams(Params):
    status: frozenset[str] | None = None
    task_type: str | None = None
    batch_id: uuid.UUID | None = None
    name: str | None = Field(default=None, max_length=255)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200)
    # The fields of each row: exactly ``fields`` (plus task_id), else the summary fields
    # plus ``include`` (see listing.list_fields); both comma-separated.
    include: str | None = None
    fields: str | None = None
    _view: list[str] = PrivateAttr(default_factory=list)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> Any:
        return _statuses(v, {s.value for s in TaskStatus}) or None if isinstance(v, str) else v

    @field_validator("task_type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v and v not in PAYLOAD_MODELS:
            raise UnknownTaskType(
                f"task_type: {v[:40]!r} is not one of {sorted(PAYLOAD_MODELS)}", field="task_type"
            )
        return v or None

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        if isinstance(v, str) and not re.fullmatch(r"[0-9]{1,4}", v, re.ASCII):
            raise ValueError(f"{v[:40]!r} must be a whole number 1..1000")
        return int(v) if isinstance(v, str) else v

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        if v:
            decode_cursor(v)  # InvalidInput when it is not one we issued
        return v or None

    @model_validator(mode="after")
    def _fields(self) -> ListParams:
        # After the other parameters, so a bad limit is reported before a bad field name.
        self._view = list_fields(self.include, self.fields)
        return self

    @property
    def view(self) -> list[str]:
        """The task fields each list row holds."""
        return self._view

    def filters(self) -> ListFilters:
        """What TaskStore.list selects and pages by."""
        return ListFilters(
            status=self.status,
            task_type=self.task_type,
            batch_id=self.batch_id,
            name=self.name,
            limit=self.limit,
            cursor=self.cursor,
        )


class ResultParams(Params):
    encoding: str = "npy"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        if v not in ARRAY_ENCODINGS:
            raise InvalidInput(f"encoding={v!r} must be npy or zstd", field="encoding")
        return v


class CountsParams(Params):
    batch_id: uuid.UUID | None = None


class ResolveParams(Params):
    """GET tasks/resolve: ``prefix``, the start of an id (at least 8 hex digits, refused
    before any query otherwise); ``kind`` keeps only task or only batch ids."""

    prefix: str
    kind: Literal["task", "batch"] | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return parse_id_start(v)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        return v or None


class EnqueueParams(Params):
    task_type: str | None = None

    _type = field_validator("task_type")(ListParams._type.__func__)


class EventsParams(Params):
    after: str | None = None
    status: frozenset[str] | None = None
    timeout_s: float = 25.0

    @field_validator("after")
    @classmethod
    def _after(cls, v: str | None) -> str | None:
        if v in (None, "", "$"):
            return None
        if CURSOR_TOKEN.fullmatch(v):
            return v
        return stream_id(v)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> Any:
        known = {s.value for s in TaskStatus} | {DELETED}
        return _statuses(v, known) or None if isinstance(v, str) else v

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _timeout(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str):
            if not _DECIMAL.fullmatch(v):
                raise ValueError(f"{v[:40]!r} is not a number of seconds")
            v = float(v)
        cap = (info.context or {}).get("max_timeout_s", 30.0)
        if not (isinstance(v, float | int) and math.isfinite(v) and 0 <= v):
            raise ValueError(f"must be 0..{cap:g}")
        if v > cap:
            raise OverLimit(f"must be 0..{cap:g}", limit="events_max_timeout_s", maximum=cap)
        return v


P = TypeVar("P", bound=Params)


def parse(model: type[P], values: dict[str, str], **context: Any) -> P:
    """Validate ``values`` with ``model``; InvalidInput (422) naming the parameter."""
    try:
        return model.model_validate(values, context=context)
    except ValidationError as exc:
        raise validation_error(exc) from exc
