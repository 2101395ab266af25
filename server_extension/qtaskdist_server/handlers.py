"""REST handlers: parse → TaskService / TaskStore / Broker → JSON.

Every error is ``{"error": code, "detail": message, ...}`` with the status the exception
tree assigns (errors.py): 400 bad JSON, 422 invalid (naming ``field``), 404 missing or
not yours, 409 illegal transition, 413 too large, 429 over a per-user quota (with
``Retry-After``), 503 backing service down. 403 for an unauthenticated request comes from
jupyter_server itself.

Bodies are streamed (``stream_request_body``): a body whose Content-Length is over its
route's limit is answered 413 before it is read, and a chunked one stops being kept
once it passes the limit. Bodies are parsed by :mod:`qtaskdist_jupyter.core.strictjson` and
query / header parameters by :mod:`qtaskdist_jupyter.core.params`, so every refusal happens
before the first write.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from qtaskdist_jupyter.core import params as qp
from qtaskdist_jupyter.core import strictjson
from qtaskdist_jupyter.core.broker.wire import STREAMS
from qtaskdist_jupyter.core.errors import (
    BadJson,
    DatabaseUnavailable,
    InvalidInput,
    LimitExceeded,
    PayloadTooLarge,
    QtaskdistError,
    QueueUnavailable,
    QuotaExceeded,
    ServiceUnavailable,
    TaskNotFound,
    TransitionError,
)
from qtaskdist_jupyter.core.models import TaskStatus
from qtaskdist_jupyter.core.schemas import (
    BatchCreate,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    validation_error,
)

from .events import EventTail, stream_sse
from .listing import columns_for, list_fields, row_json

M = TypeVar("M", bound=BaseModel)
API = r"/qtaskdist/api"
_ID = r"(?P<task_id>[^/]+)"
# A single task's JSON may escape its circuit text (newlines, quotes) and carry labels.
_BODY_SLACK = 256 * 1024
# Routes that take no body still get one read, bounded by this.
_NO_BODY_BYTES = 64 * 1024
# What a user reads when a backing service is down: no host, port or driver text (those
# go to the server log).
_PUBLIC_503 = {
    DatabaseUnavailable: "the task database is unreachable; try again shortly",
    QueueUnavailable: "the task queue is unreachable; try again shortly",
}
_STREAMS_RETRY_AFTER_S = 5


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    return TaskRead.model_validate(row).model_dump(mode="json")


def public_message(exc: ServiceUnavailable) -> str:
    for cls, text in _PUBLIC_503.items():
        if isinstance(exc, cls):
            return text
    return "a backing service is unreachable; try again shortly"


@web.stream_request_body
class QtaskdistHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "qtaskdist"
    _chunks: list[bytes]
    _size: int = 0

    @property
    def app(self) -> Any:
        return self.extensionapp

    @property
    def service(self) -> Any:
        return self.app.service

    @property
    def owner(self) -> str:
        return self.app.owner_of(self.current_user)

    def body_limit(self) -> int:
        """Largest body this route reads (routes with a body raise it)."""
        return _NO_BODY_BYTES

    async def prepare(self) -> None:
        self._chunks, self._size = [], 0
        declared = self.request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.body_limit():
            # Answered before the body is read; the connection closes after this reply.
            raise self._too_large(int(declared))
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_limit():
            self._chunks.append(chunk)
        else:
            self._chunks = []  # past the limit nothing more is kept; body() says 413

    def _too_large(self, size: int) -> PayloadTooLarge:
        limit = self.body_limit()
        return PayloadTooLarge(
            f"request body is {size} bytes; the limit is {limit}",
            limit="body_bytes",
            value=size,
            maximum=limit,
        )

    def task_id(self, raw: str) -> uuid.UUID:
        try:
            return uuid.UUID(raw)
        except ValueError:
            # Same answer as a missing task: an id that can't exist doesn't.
            raise TaskNotFound(f"task {raw[:64]} not found", task_id=raw[:64]) from None

    def body(self, model: type[M]) -> M:
        if self._size > self.body_limit():
            raise self._too_large(self._size)
        data = strictjson.loads(b"".join(self._chunks))
        if not isinstance(data, dict):
            raise BadJson("request body must be a JSON object")
        try:
            return model.model_validate(data, context={"limits": self.service.settings.limits})
        except ValidationError as exc:
            raise validation_error(exc) from exc

    def params(self, model: type[qp._Params], **context: Any) -> Any:
        values = {k: self.get_query_argument(k) for k in self.request.query_arguments}
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
        from .metrics import metrics_of  # the latency histogram of GET metrics

        metrics_of(self.app).observe(self)
        super().on_finish()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected refusals are one log line, not a traceback.
        if isinstance(value, QtaskdistError) and value.http_status < 500:
            self.log.info("qtaskdist %s: %s", value.code, value.message)
        elif isinstance(value, ServiceUnavailable):
            self.log.warning("qtaskdist %s: %s", value.code, value.message)
        else:
            super().log_exception(typ, value, tb)


class TasksHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return self.service.settings.limits.max_payload_bytes * 2 + _BODY_SLACK

    @web.authenticated
    @authorized
    async def post(self) -> None:
        spec = self.body(TaskCreate)
        new = self.service.to_new_task(spec, self.owner)
        small = await self.service.admit(self.owner, 1)
        (row,) = await self.service.create([new], enqueue=spec.enqueue, full=True, priority=small)
        self.json(task_json(row), 201)

    @web.authenticated
    @authorized
    async def get(self) -> None:
        q = self.params(qp.ListParams)
        arg = self.get_query_argument
        fields = list_fields(arg("include", None), arg("fields", None))
        rows, nxt = await self.service.store.list(
            owner=self.owner, columns=columns_for(fields), **q.model_dump()
        )
        self.json({"tasks": [row_json(r, fields) for r in rows], "next_cursor": nxt})


class BatchHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return int(self.app.max_batch_bytes)

    @web.authenticated
    @authorized
    async def post(self) -> None:
        limits = self.service.settings.limits
        spec = self.body(BatchCreate)
        if len(spec.tasks) > limits.max_batch_tasks:
            raise LimitExceeded(
                f"{len(spec.tasks)} tasks in one batch; the limit is {limits.max_batch_tasks}",
                limit="batch_tasks",
                value=len(spec.tasks),
                maximum=limits.max_batch_tasks,
                field="tasks",
            )
        batch_id = spec.batch_id or uuid.uuid4()
        # Circuit checks are CPU work: off the event loop, and all before any row exists.
        new = await asyncio.to_thread(self._validate_all, spec, batch_id)
        small = await self.service.admit(self.owner, len(new))
        await self.service.create(new, enqueue=spec.enqueue, priority=small)
        ids = [str(n.task_id) for n in new]
        self.json({"batch_id": str(batch_id), "task_ids": ids, "count": len(ids)}, 201)

    def _validate_all(self, spec: BatchCreate, batch_id: uuid.UUID) -> list[Any]:
        out = []
        for i, t in enumerate(spec.tasks):
            try:
                n = self.service.to_new_task(t, self.owner, batch_id)
            except InvalidInput as exc:
                exc.detail["field"] = f"tasks.{i}.{exc.field or 'payload'}"
                exc.detail["index"] = i
                exc.message = f"tasks[{i}]: {exc.message}"
                raise
            n.task_id = uuid.uuid4()
            out.append(n)
        return out


class TaskHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return self.service.settings.limits.label_max_bytes * 2 + _NO_BODY_BYTES

    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.json(task_json(await self.service.store.get(self.task_id(task_id), self.owner)))

    @web.authenticated
    @authorized
    async def patch(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        upd = self.body(TaskUpdate)
        fields = upd.model_dump(exclude_unset=True, exclude={"status", "labels", "meta_data"})
        # name may be cleared; the other columns are NOT NULL, so null means "leave it".
        fields = {k: v for k, v in fields.items() if v is not None or k == "name"}
        if (labels := upd.user_labels()) is not None:
            fields["labels"] = labels
        if upd.status is not None:
            await self._move(tid, owner, upd.status)
        if fields:
            await self.service.store.update(tid, owner, fields)
        self.json(task_json(await self.service.store.get(tid, owner)))

    async def _move(self, tid: uuid.UUID, owner: str, target: TaskStatus) -> None:
        current = (await self.service.store.get(tid, owner))["status"]
        if target == TaskStatus.CANCELLED:
            await self.service.cancel(tid, owner)
        elif target == TaskStatus.QUEUED and current == TaskStatus.PENDING:
            await self.service.enqueue_one(tid, owner)
        elif target == TaskStatus.QUEUED and current in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            small = await self.service.admit(owner, 1)
            await self.service.retry(tid, owner, priority=small)
        else:
            raise TransitionError(
                f"cannot move task {tid} from {current} to {target}: a client may only "
                "cancel, enqueue a pending task, or retry a failed/cancelled one",
                task_id=str(tid),
                status=current,
            )

    @web.authenticated
    @authorized
    async def delete(self, task_id: str) -> None:
        await self.service.delete(self.task_id(task_id), self.owner)
        self.set_status(204)
        self.finish()


class EnqueueHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        wanted = self.params(qp.EnqueueParams).task_type
        row = await self.service.store.get(tid, owner)
        if wanted and wanted != row["task_type"]:
            raise InvalidInput(
                f"task {tid} is a {row['task_type']} task, not {wanted}", field="task_type"
            )
        self.json(task_json(await self.service.enqueue_one(tid, owner)))


class CancelHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        self.json(task_json(await self.service.cancel(self.task_id(task_id), self.owner)))


class RetryHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        await self.service.store.get(tid, owner)  # 404 before the quota says anything
        small = await self.service.admit(owner, 1)
        self.json(task_json(await self.service.retry(tid, owner, priority=small)))


class CountsHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        q = self.params(qp.CountsParams)
        counts = await self.service.store.counts(owner=self.owner, batch_id=q.batch_id)
        self.json({"counts": counts})


class EventsHandler(QtaskdistHandler):
    _closed: asyncio.Event | None = None

    @web.authenticated
    @authorized
    async def get(self) -> None:
        values = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        if self.request.headers.get("Last-Event-ID"):
            values["after"] = self.request.headers["Last-Event-ID"]
        q = qp.parse(qp.EventsParams, values, max_timeout_s=self.app.events_max_timeout_s)
        owner = self.owner
        with self.app.event_streams.hold(owner, self.service.settings.limits.max_event_streams):
            tail = await EventTail.start(
                self.service.broker, owner, q.after, q.status, self.app.cursor_book
            )
            if "text/event-stream" in self.request.headers.get("Accept", ""):
                await self._sse(tail)
                return
            events = await tail.poll(q.timeout_s)
            self.json({"events": events, "cursor": tail.cursor})

    async def _sse(self, tail: EventTail) -> None:
        self._closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

        async def write(chunk: str) -> None:
            self.write(chunk)
            await self.flush()

        try:
            await stream_sse(tail, write, self._closed)
        except StreamClosedError:
            return
        except ServiceUnavailable as exc:
            # Headers are sent, so no 503 now: say why and end the stream; EventSource
            # reconnects by itself (retry: 2000) and resumes from Last-Event-ID.
            self.log.warning("qtaskdist events stream ended: %s", exc.message)
            frame = {"error": exc.code, "detail": public_message(exc)}
            self.write(f"event: error\ndata: {strictjson.dumps(frame)}\n\n")
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._closed is not None:
            self._closed.set()
        super().on_connection_close()


default_handlers: list[tuple[str, type[QtaskdistHandler]]] = [
    (rf"{API}/tasks", TasksHandler),
    (rf"{API}/tasks/batch", BatchHandler),
    (rf"{API}/tasks/counts", CountsHandler),
    (rf"{API}/tasks/{_ID}", TaskHandler),
    (rf"{API}/tasks/{_ID}/enqueue", EnqueueHandler),
    (rf"{API}/tasks/{_ID}/cancel", CancelHandler),
    (rf"{API}/tasks/{_ID}/retry", RetryHandler),
    (rf"{API}/events", EventsHandler),
]

__all__ = ["default_handlers", "STREAMS"]

# Last: health.py builds on the base handler above.
from .health import HealthHandler  # noqa: E402

default_handlers.append((rf"{API}/health", HealthHandler))
