"""REST handlers: parse → TaskService / TaskStore / Broker → JSON.

Every error is ``{"error": code, "detail": message, ...}`` with the status the exception
tree assigns (errors.py): 400 bad JSON, 422 invalid (naming ``field``), 404 missing or
not yours, 409 illegal transition, 413 too large, 503 backing service down. 403 for an
unauthenticated request comes from jupyter_server itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from qtaskdist_jupyter.errors import (
    InvalidInput,
    PayloadTooLarge,
    QtaskdistError,
    ServiceUnavailable,
    TaskNotFound,
    TransitionError,
)
from qtaskdist_jupyter.models import TaskStatus
from qtaskdist_jupyter.schemas import (
    BatchCreate,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    validation_error,
)
from qtaskdist_jupyter.streams import STREAMS, stream_for

from .events import EventTail, parse_after, parse_statuses, stream_sse
from .listing import list_fields, row_json

M = TypeVar("M", bound=BaseModel)
API = r"/qtaskdist/api"
_ID = r"(?P<task_id>[^/]+)"
# A single task's JSON may escape its circuit text (newlines, quotes) and carry metadata.
_BODY_SLACK = 256 * 1024


class BadJson(InvalidInput):
    http_status = 400
    code = "bad_json"


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    return TaskRead.model_validate(row).model_dump(mode="json")


def parse_uuid(value: str | None, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{field}={value!r} is not a UUID", field=field) from None


class QtaskdistHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "qtaskdist"

    @property
    def app(self) -> Any:
        return self.extensionapp

    @property
    def service(self) -> Any:
        return self.app.service

    @property
    def owner(self) -> str:
        return self.app.owner_of(self.current_user)

    def task_id(self, raw: str) -> uuid.UUID:
        try:
            return uuid.UUID(raw)
        except ValueError:
            # Same answer as a missing task: an id that can't exist doesn't.
            raise TaskNotFound(f"task {raw} not found", task_id=raw) from None

    def body(self, model: type[M], max_bytes: int) -> M:
        raw = self.request.body
        if len(raw) > max_bytes:
            raise PayloadTooLarge(
                f"request body is {len(raw)} bytes; the limit is {max_bytes}",
                limit="body_bytes",
                value=len(raw),
                maximum=max_bytes,
            )
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJson(f"request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadJson("request body must be a JSON object")
        try:
            return model.model_validate(data, context={"limits": self.service.settings.limits})
        except ValidationError as exc:
            raise validation_error(exc) from exc

    def json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, QtaskdistError):
            self.set_status(exc.http_status)
            body = exc.to_json()
        elif isinstance(exc, web.HTTPError):
            body = {"error": f"http_{status_code}", "detail": exc.log_message or self._reason}
        else:
            body = {"error": "internal_error", "detail": "unhandled server error; see its log"}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

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
    @web.authenticated
    @authorized
    async def post(self) -> None:
        limits = self.service.settings.limits
        spec = self.body(TaskCreate, limits.max_payload_bytes * 2 + _BODY_SLACK)
        new = self.service.to_new_task(spec, self.owner)
        (row,) = await self.service.create([new], enqueue=spec.enqueue, full=True)
        self.json(task_json(row), 201)

    @web.authenticated
    @authorized
    async def get(self) -> None:
        arg = self.get_query_argument
        statuses = [s for s in arg("status", "").split(",") if s]
        for s in statuses:
            if s not in {t.value for t in TaskStatus}:
                raise InvalidInput(f"status={s!r} is not one of {list(TaskStatus)}", field="status")
        task_type = arg("task_type", None) or None
        if task_type:
            stream_for(task_type)
        batch = arg("batch_id", None)
        raw_limit = arg("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise InvalidInput(f"limit={raw_limit!r} must be 1..1000", field="limit")
        rows, nxt = await self.service.store.list(
            owner=self.owner,
            status=statuses or None,
            task_type=task_type,
            batch_id=parse_uuid(batch, "batch_id") if batch else None,
            name=arg("name", None) or None,
            limit=int(raw_limit),
            cursor=arg("cursor", None) or None,
            columns=(fields := list_fields(arg("include", None), arg("fields", None))),
        )
        self.json({"tasks": [row_json(r, fields) for r in rows], "next_cursor": nxt})


class BatchHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        limits = self.service.settings.limits
        spec = self.body(BatchCreate, self.app.max_batch_bytes)
        if len(spec.tasks) > limits.max_batch_tasks:
            from qtaskdist_jupyter.errors import LimitExceeded

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
        await self.service.create(new, enqueue=spec.enqueue)
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
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.json(task_json(await self.service.store.get(self.task_id(task_id), self.owner)))

    @web.authenticated
    @authorized
    async def patch(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        upd = self.body(TaskUpdate, _BODY_SLACK)
        fields = upd.model_dump(exclude_unset=True, exclude={"status"})
        # name may be cleared; the other columns are NOT NULL, so null means "leave it".
        fields = {k: v for k, v in fields.items() if v is not None or k == "name"}
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
            await self.service.retry(tid, owner)
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
        wanted = self.get_query_argument("task_type", None)
        row = await self.service.store.get(tid, owner)
        if wanted:
            stream_for(wanted)
            if wanted != row["task_type"]:
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
        self.json(task_json(await self.service.retry(self.task_id(task_id), self.owner)))


class CountsHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        batch = self.get_query_argument("batch_id", None)
        counts = await self.service.store.counts(
            owner=self.owner, batch_id=parse_uuid(batch, "batch_id") if batch else None
        )
        self.json({"counts": counts})


class EventsHandler(QtaskdistHandler):
    _closed: asyncio.Event | None = None

    @web.authenticated
    @authorized
    async def get(self) -> None:
        after = self.request.headers.get("Last-Event-ID") or self.get_query_argument("after", None)
        statuses = parse_statuses(self.get_query_argument("status", None))
        tail = await EventTail.start(self.service.broker, self.owner, parse_after(after), statuses)
        if "text/event-stream" in self.request.headers.get("Accept", ""):
            await self._sse(tail)
            return
        raw = self.get_query_argument("timeout_s", "25")
        try:
            timeout_s = float(raw)
        except ValueError:
            raise InvalidInput(f"timeout_s={raw!r} is not a number", field="timeout_s") from None
        if not 0 <= timeout_s <= self.app.events_max_timeout_s:
            raise InvalidInput(
                f"timeout_s must be 0..{self.app.events_max_timeout_s}", field="timeout_s"
            )
        events = await tail.poll(timeout_s)
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
            self.write(f"event: error\ndata: {json.dumps(exc.to_json())}\n\n")
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._closed is not None:
            self._closed.set()
        super().on_connection_close()


class HealthHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        svc = self.service
        db, redis = await asyncio.gather(_probe(svc.store.ping()), _probe(svc.broker.ping()))
        workers: list[dict[str, Any]] = []
        streams: dict[str, Any] = {}
        if redis["ok"]:
            try:
                now, stale = time.time(), self.app.worker_stale_s
                for name, info in sorted((await svc.broker.workers()).items()):
                    age = max(0.0, now - float(info.pop("ts", 0)))
                    workers.append(
                        {
                            **info,
                            "name": name,
                            "host": info.get("host"),
                            "pid": info.get("pid"),
                            "last_heartbeat_s": round(age, 3),
                            "alive": age < stale,
                        }
                    )
                streams = await svc.broker.stream_stats()
            except ServiceUnavailable as exc:
                redis = {"ok": False, "error": exc.message}
        self.json({"database": db, "redis": redis, "workers": workers, "streams": streams})


async def _probe(check: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check, timeout=10)
        return {"ok": True}
    except (ServiceUnavailable, TimeoutError) as exc:
        return {"ok": False, "error": getattr(exc, "message", None) or "timed out"}


default_handlers: list[tuple[str, type[QtaskdistHandler]]] = [
    (rf"{API}/tasks", TasksHandler),
    (rf"{API}/tasks/batch", BatchHandler),
    (rf"{API}/tasks/counts", CountsHandler),
    (rf"{API}/tasks/{_ID}", TaskHandler),
    (rf"{API}/tasks/{_ID}/enqueue", EnqueueHandler),
    (rf"{API}/tasks/{_ID}/cancel", CancelHandler),
    (rf"{API}/tasks/{_ID}/retry", RetryHandler),
    (rf"{API}/events", EventsHandler),
    (rf"{API}/health", HealthHandler),
]

__all__ = ["default_handlers", "STREAMS"]
