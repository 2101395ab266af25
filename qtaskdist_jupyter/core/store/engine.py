"""The database plumbing under :class:`~qtaskdist_jupyter.core.store.store.TaskStore`: the engine,
driver errors mapped onto ours, the keyset cursor and the row a new task becomes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, TypeVar, cast

import psycopg
from sqlalchemy import Row, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qtaskdist_jupyter.core import fastjson
from qtaskdist_jupyter.core.error_map import maps_errors
from qtaskdist_jupyter.core.errors import DatabaseUnavailable, DataRefused, InvalidInput
from qtaskdist_jupyter.core.jsontypes import JsonObject

R = TypeVar("R", bound=Mapping[str, object])


def shaped(shape: type[R], rows: Iterable[Row[*tuple[Any, ...]]]) -> list[R]:
    """``rows`` as ``shape`` (a TypedDict of :mod:`.shapes`): the one place a statement's
    rows are taken at its word (it selects or returns exactly those columns)."""
    return [cast(R, dict(r._mapping)) for r in rows]


def shaped_one(shape: type[R], row: Row[*tuple[Any, ...]]) -> R:
    """One row as ``shape`` (see :func:`shaped`)."""
    return cast(R, dict(row._mapping))


class NewRow(TypedDict):
    """The columns a new task is inserted with (the others take their defaults)."""

    task_id: uuid.UUID
    task_type: str
    payload: JsonObject
    owner: str
    name: str | None
    tags: list[str]
    max_retries: int
    batch_id: uuid.UUID | None
    meta_data: JsonObject


@dataclass
class NewTask:
    task_type: str
    payload: JsonObject
    owner: str
    name: str | None = None
    tags: list[str] | None = None
    max_retries: int = 3
    batch_id: uuid.UUID | None = None
    meta_data: JsonObject | None = None
    task_id: uuid.UUID | None = None

    def row(self) -> NewRow:
        return {
            "task_id": self.task_id or uuid.uuid4(),
            "task_type": self.task_type,
            "payload": self.payload,
            "owner": self.owner,
            "name": self.name,
            "tags": self.tags or [],
            "max_retries": self.max_retries,
            "batch_id": self.batch_id,
            "meta_data": self.meta_data or {},
        }


# SQLSTATE classes whose statements a retry can fix: the connection (08), the server
# going down or starting (57P0x), too many connections / out of memory or disk (53),
# serialization failures and deadlocks (40), a statement or lock timeout (57014, 55P03).
_TRANSIENT_CLASSES = ("08", "53", "40")
_TRANSIENT_STATES = ("57P01", "57P02", "57P03", "57P04", "57P05", "57014", "55P03")
# SQLSTATE classes that refuse the statement's data: a retry sends the same data again.
# 22 data exception (encoding, bad value, string too long), 23 integrity constraint,
# 54 program limit exceeded (jsonb / array / field size, nesting depth).
_DATA_CLASSES = {
    "22": "data exception",
    "23": "integrity constraint violation",
    "54": "program limit exceeded",
}


# Errors without a SQLSTATE at these types are the connection's (refused, reset, closed).
_CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)


def classify(exc: BaseException) -> str:
    """``"unavailable"`` (a retry may succeed), ``"data"`` (the database refused this data:
    never retry) or ``"other"`` (a bug: let it surface). ``exc`` is a SQLAlchemy or driver
    error; connection-level failures carry no SQLSTATE."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    if state:
        if state[:2] in _DATA_CLASSES:
            return "data"
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return "unavailable"
        return "other"
    if isinstance(orig, psycopg.DataError):
        # Refused by the driver before sending (a NUL character in a text value).
        return "data"
    if isinstance(exc, _CONNECTION_ERRORS):
        return "unavailable"
    return "other"


def refused(exc: BaseException) -> DataRefused:
    """The one-line DataRefused for a statement whose data PostgreSQL would not take."""
    orig = getattr(exc, "orig", None) or exc
    state = str(getattr(orig, "sqlstate", "") or "")
    if not state:
        return DataRefused(f"the database driver refused the data: {_first_line(exc)}")
    kind = _DATA_CLASSES.get(state[:2], "refused")
    return DataRefused(
        f"PostgreSQL refused the data ({kind}, SQLSTATE {state}): {_first_line(exc)}",
        sqlstate=state,
    )


def _database_error(exc: BaseException) -> BaseException | None:
    """Connection-level failures → DatabaseUnavailable, statements refused for their
    data → DataRefused (never an outage), anything else (a bug) → itself."""
    kind = classify(exc)
    if kind == "data":
        return refused(exc)
    if kind == "unavailable":
        lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
        what = "database connection lost" if lost else "database unreachable"
        return DatabaseUnavailable(f"{what}: {_first_line(exc)}")
    return None


# Every TaskStore method that touches the database wears this.
db_errors = maps_errors((DBAPIError, psycopg.Error, OSError), _database_error)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__


def encode_cursor(created_at: datetime, task_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(task_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, tid = json.loads(raw)
        if not (isinstance(ts, str) and isinstance(tid, str)):
            raise TypeError("cursor items must be strings")
        at = datetime.fromisoformat(ts)
        if at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return at, uuid.UUID(tid)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput("cursor is not one this server issued", field="cursor") from exc


# A pooled connection idle longer than this is tested (SELECT 1) before use. Busy ones
# skip the test, the way HikariCP's aliveBypassWindowMs does: SQLAlchemy's pool_pre_ping
# tests every checkout, a round trip on each request and claim (benchmarks/README.md,
# session 2). A connection that died while in use fails its statement with
# DatabaseUnavailable, which invalidates the whole pool.
PING_IF_IDLE_S = 1.0


def make_engine(database_url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An autocommit engine: every TaskStore method is one statement (a guarded UPDATE,
    a multi-row INSERT, one COPY), atomic by itself, so BEGIN and COMMIT would only add
    two round trips (measured in benchmarks/README.md, session 2). A method that ever needs two
    statements together must open a transaction explicitly
    (``engine.execution_options(isolation_level="READ COMMITTED")``)."""
    engine = create_async_engine(
        database_url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
        # Rows come back with their payload, result and meta as JSON (core/fastjson.py).
        json_deserializer=fastjson.loads,
    )
    _ping_when_idle(engine, PING_IF_IDLE_S)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is None or time.monotonic() - last <= idle_s:
            return
        try:
            cur = dbapi_conn.cursor()
            cur.execute("SELECT 1")
            cur.close()
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable
            # The pool discards this connection and checks out another (a new one).
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc
