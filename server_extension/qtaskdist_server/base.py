"""The base of every qtaskdist API handler: bounded streamed bodies, strict parsing, and
errors answered as JSON. Host-neutral: plain tornado.

A handler class here holds the logic of one route; each host binds it to its own base
class (:func:`bind`): the jupyter-server extension's (``extension_base.py``: jupyter_server's
identity and authorizer) or the shared service's (``service_host/base.py``: hub or static
tokens). The host base provides ``app`` (the host: ``service``, ``metrics``,
``event_streams``, ``cursor_book`` and the host settings), ``owner`` (who asks) and
``async is_admin()``, and authenticates the request in ``prepare`` (after the
Content-Length check, before the body is read).

Every error is ``{"error": code, "detail": message, ...}`` with the status the exception
tree assigns (errors.py): 400 bad JSON, 422 invalid (naming ``field``), 404 missing or
not yours, 409 illegal transition, 413 too large, 429 over a per-user quota (with
``Retry-After``), 503 backing service down (``auth_unavailable``: the hub can't be asked).
403 for an unauthenticated request comes from the host's base.

Bodies are streamed (``stream_request_body``): a body whose Content-Length is over its
route's limit is answered 413 before it is read, and a chunked one stops being kept
once it passes the limit. Bodies are parsed by :mod:`qtaskdist_jupyter.core.strictjson`
(in a thread when large) and query / header parameters by
:mod:`qtaskdist_server.api.params`, so every refusal happens before the first write.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tornado import web

from qtaskdist_jupyter.core import strictjson
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import (
    BadJson,
    PayloadTooLarge,
    QtaskdistError,
    QuotaExceeded,
    ServiceUnavailable,
    TaskNotFound,
)
from qtaskdist_jupyter.core.schemas import TaskRead, validation_error
from qtaskdist_server.api import access, quota
from qtaskdist_server.api import params as qp
from qtaskdist_server.api.fleet import public_message
from qtaskdist_server.api.service import TaskService

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=qp.Params)
API = r"/qtaskdist/api"
TASK_ID = r"(?P<task_id>[^/]+)"
# Routes that take no body still get one read, bounded by this.
NO_BODY_BYTES = 64 * 1024
# A body up to this size is parsed on the event loop: a thread hop would cost more than
# the parse.
_PARSE_INLINE_BYTES = 64 * 1024


def json_object(box: list[bytes]) -> dict[str, Any]:
    """The body taken out of ``box`` (so its bytes are freed once decoded) as a strict
    JSON object: 400 when it is not one; 403 when it names an owner."""
    raw = box.pop()
    try:  # the encodings json.loads accepts (UTF-8, -16, -32)
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BadJson(f"request body is not JSON: {str(exc)[:200]}", field="body") from None
    del raw
    data = strictjson.loads(text)
    if not isinstance(data, dict):
        raise BadJson("request body must be a JSON object", field="body")
    access.refuse_owner_fields(data)
    return data


def task_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return TaskRead.model_validate(row).model_dump(mode="json")


H = TypeVar("H", bound=web.RequestHandler)


def bind(
    routes: list[tuple[str, type[QtaskdistHandler]]], host_base: type[H], prefix: str = ""
) -> list[tuple[str, type[web.RequestHandler]]]:
    """The route table with each handler composed onto ``host_base`` (logic first, so its
    ``prepare``, ``write_error`` and ``on_finish`` wrap the host's), under ``prefix``."""
    prefix = prefix.rstrip("/")
    return [(prefix + pattern, type(cls.__name__, (cls, host_base), {})) for pattern, cls in routes]


@web.stream_request_body
class QtaskdistHandler(web.RequestHandler):
    """The logic half of a handler; ``app``, ``owner``, ``is_admin`` and ``log`` come
    from the host base it is bound to."""

    auth_resource = "qtaskdist"
    _chunks: list[bytes]
    _size: int = 0
    _large_of: str | None = None  # the owner whose large-body slot this request holds
    _refused: QtaskdistError | None = None
    _operator: bool | None = None
    app: Any
    owner: str
    log: Any

    @property
    def service(self) -> TaskService:
        return self.app.service

    def body_limit(self) -> int:
        """Largest body this route reads (routes with a body raise it)."""
        return NO_BODY_BYTES

    async def prepare(self) -> None:
        self._chunks, self._size = [], 0
        declared = self.request.headers.get("Content-Length", "")
        size = int(declared) if declared.isascii() and declared.isdigit() else None
        if size is not None and size > self.body_limit():
            # Answered before the body is read; the connection closes after this reply.
            raise self._too_large(size)
        pending = super().prepare()  # the host base: authenticates, or raises 403 / 503
        if pending is not None:
            await pending
        if quota.is_large_body(size, self.limits) and self.request.method != "OPTIONS":
            # Only task submissions take a large body: a 429 before it is read, whether
            # for the owner's large bodies or for their active tasks (at least one more).
            self._hold_large_body()
            await self.service.precheck(self.owner, 1)

    async def is_operator(self) -> bool:
        """Whether this request's user is a qtaskdist operator (asked once per request)."""
        if self._operator is None:
            # is_admin comes from the host base class that bind() puts beside this one.
            self._operator = bool(await self.is_admin())  # pyright: ignore[reportAttributeAccessIssue]
        return self._operator

    async def task_answer(self, row: Mapping[str, Any], status: int = 200) -> None:
        """One task row as JSON, as this user may see it (access.Redactor)."""
        operator = await self.is_operator()
        self.json(task_json(self.service.viewed(row, operator=operator)), status)

    @property
    def limits(self) -> Limits:
        return self.service.settings.limits

    def _hold_large_body(self) -> None:
        """Take one of the owner's large-body slots (until on_finish); QuotaExceeded when
        they have max_large_bodies in flight. Called once the host authenticated."""
        if self._large_of is not None:
            return
        owner = self.owner
        self.service.large_bodies.acquire(owner, self.limits)
        self._large_of = owner

    def _release_large_body(self) -> None:
        if self._large_of is not None:
            self.service.large_bodies.release(self._large_of)
            self._large_of = None

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.limits.large_body_bytes and self._refused is None:
            try:  # a chunked body is counted once it grows large
                self._hold_large_body()
            except QuotaExceeded as exc:
                self._refused = exc
        if self._size <= self.body_limit() and self._refused is None:
            self._chunks.append(chunk)
        else:
            self._chunks = []  # nothing more is kept; body() says 413 (or 429)

    def _too_large(self, size: int) -> PayloadTooLarge:
        limit = self.body_limit()
        return PayloadTooLarge(
            f"request body is {size} bytes; the limit is {limit}",
            limit="body_bytes",
            field="body",
            value=size,
            maximum=limit,
        )

    def task_id(self, raw: str) -> uuid.UUID:
        try:
            return uuid.UUID(raw)
        except ValueError:
            # Same answer as a missing task: an id that can't exist doesn't.
            raise TaskNotFound(f"task {raw[:64]} not found", task_id=raw[:64]) from None

    async def body(
        self, model: type[M], count: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    ) -> M:
        """The request body as ``model``: 413 past the limit, 400 not a JSON object, 422
        invalid. ``count`` sees the JSON first (a batch's quota from its number of tasks,
        before any is validated). A large body is parsed off the event loop, holding one
        copy of it at a time (pieces, bytes, text)."""
        if self._refused is not None:
            raise self._refused
        if self._size > self.body_limit():
            raise self._too_large(self._size)
        box, self._chunks = [b"".join(self._chunks)], []
        inline = self._size <= _PARSE_INLINE_BYTES
        data = json_object(box) if inline else await asyncio.to_thread(json_object, box)
        if count is not None:
            await count(data)
        if inline:
            return self._parse(model, data)
        return await asyncio.to_thread(self._parse, model, data)

    def _parse(self, model: type[M], data: dict[str, Any]) -> M:
        try:
            return model.model_validate(data, context={"limits": self.service.settings.limits})
        except ValidationError as exc:
            raise validation_error(exc) from exc

    def params(self, model: type[P], **context: Any) -> P:
        """The query parameters as ``model`` (a repeated one: its last value)."""
        values = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        access.refuse_owner_fields(values)
        return qp.parse(model, values, **context)

    def json(self, data: Any, status: int = 200) -> None:
        text = strictjson.dumps(data)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, ServiceUnavailable):
            self.set_status(exc.http_status)
            body = {"error": exc.code, "detail": public_message(exc)}
        elif isinstance(exc, QtaskdistError):
            self.set_status(exc.http_status)
            body = exc.to_json()
            if isinstance(exc, QuotaExceeded):
                self.set_header("Retry-After", str(exc.retry_after_s))
        elif isinstance(exc, web.HTTPError):
            body = {"error": f"http_{status_code}", "detail": exc.log_message or self._reason}
        else:
            body = {"error": "internal_error", "detail": "unhandled server error; see its log"}
        self.set_header("Content-Type", "application/json")
        self.finish(strictjson.dumps(body))

    def on_finish(self) -> None:
        self._release_large_body()
        self.app.metrics.observe(self)  # the latency histogram of GET metrics
        super().on_finish()

    def on_connection_close(self) -> None:
        self._release_large_body()
        super().on_connection_close()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected refusals are one log line, not a traceback.
        if isinstance(value, QtaskdistError) and value.http_status < 500:
            self.log.info("qtaskdist %s: %s", value.code, value.message)
        elif isinstance(value, ServiceUnavailable):
            self.log.warning("qtaskdist %s: %s", value.code, value.message)
        else:
            super().log_exception(typ, value, tb)
