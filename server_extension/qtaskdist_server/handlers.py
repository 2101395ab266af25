"""REST handlers of the task API: parse → one :class:`TaskService` call → JSON.

The base class (base.py) bounds and parses bodies and answers every error as JSON; the
URL table of the whole API is at the bottom, relative to the host's prefix (each host
binds it to its own base with :func:`.base.bind`). Host-neutral: no jupyter_server here.
"""

from __future__ import annotations

from tornado import web

from qtaskdist_jupyter.core.jsontypes import JsonMap
from qtaskdist_jupyter.core.schemas import BatchCreate, TaskCreate, TaskUpdate
from qtaskdist_server.api import params as qp
from qtaskdist_server.api.listing import row_json

from .base import API, NO_BODY_BYTES, TASK_ID, QtaskdistHandler
from .events import EventsHandler
from .health import HealthHandler
from .metrics import metrics_handlers
from .results import ResultArrayHandler

# A single task's JSON may escape its circuit text (newlines, quotes) and carry labels.
_BODY_SLACK = 256 * 1024


class TasksHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return self.service.settings.limits.max_payload_bytes * 2 + _BODY_SLACK

    async def post(self) -> None:
        spec = await self.body(TaskCreate)
        await self.task_answer(await self.service.submit(self.owner, spec), 201)

    async def get(self) -> None:
        q = self.params(qp.ListParams)
        rows, nxt = await self.service.list_tasks(self.owner, q, operator=await self.is_operator())
        self.json({"tasks": [row_json(r, q.view) for r in rows], "next_cursor": nxt})


class BatchHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return int(self.app.max_batch_bytes)

    async def post(self) -> None:
        spec = await self.body(BatchCreate, count=self._count)
        batch_id, ids = await self.service.submit_batch(self.owner, spec)
        self.json({"batch_id": str(batch_id), "task_ids": ids, "count": len(ids)}, 201)

    async def _count(self, data: JsonMap) -> None:
        """The batch's size and the owner's quota from the number of tasks, before a
        single one is validated (a 63 MB body over the quota costs its parse only)."""
        tasks = data.get("tasks")
        if isinstance(tasks, list):
            await self.service.admit_count(self.owner, len(tasks))


class TaskHandler(QtaskdistHandler):
    def body_limit(self) -> int:
        return self.service.settings.limits.label_max_bytes * 2 + NO_BODY_BYTES

    async def get(self, task_id: str) -> None:
        await self.task_answer(await self.service.get(self.task_id(task_id), self.owner))

    async def patch(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        change = await self.body(TaskUpdate)
        await self.task_answer(await self.service.update(tid, owner, change))

    async def delete(self, task_id: str) -> None:
        await self.service.delete(self.task_id(task_id), self.owner)
        self.set_status(204)
        self.finish()


class EnqueueHandler(QtaskdistHandler):
    async def post(self, task_id: str) -> None:
        tid, owner = self.task_id(task_id), self.owner
        wanted = self.params(qp.EnqueueParams).task_type
        await self.task_answer(await self.service.enqueue(tid, owner, wanted))


class CancelHandler(QtaskdistHandler):
    async def post(self, task_id: str) -> None:
        await self.task_answer(await self.service.cancel(self.task_id(task_id), self.owner))


class RetryHandler(QtaskdistHandler):
    async def post(self, task_id: str) -> None:
        await self.task_answer(await self.service.retry(self.task_id(task_id), self.owner))


class CountsHandler(QtaskdistHandler):
    async def get(self) -> None:
        q = self.params(qp.CountsParams)
        self.json({"counts": await self.service.counts(self.owner, q.batch_id)})


class ResolveHandler(QtaskdistHandler):
    async def get(self) -> None:
        q = self.params(qp.ResolveParams)
        self.json(await self.service.resolve(self.owner, q.prefix, q.kind))


class UnknownRouteHandler(QtaskdistHandler):
    """Any other path under the API (``tasks/a/b``, a typo): a JSON 404 like every other
    answer of the API, not the host's HTML page; after authentication, like the rest."""

    async def prepare(self) -> None:
        await super().prepare()
        raise web.HTTPError(404, f"no API route {self.request.path[-80:]}")


# Every route of the API, below the host's prefix; tasks/batch, tasks/counts and
# tasks/resolve before tasks/{id}, which they match.
default_handlers: list[tuple[str, type[QtaskdistHandler]]] = [
    (rf"{API}/tasks", TasksHandler),
    (rf"{API}/tasks/batch", BatchHandler),
    (rf"{API}/tasks/counts", CountsHandler),
    (rf"{API}/tasks/resolve", ResolveHandler),
    (rf"{API}/tasks/{TASK_ID}", TaskHandler),
    (rf"{API}/tasks/{TASK_ID}/enqueue", EnqueueHandler),
    (rf"{API}/tasks/{TASK_ID}/cancel", CancelHandler),
    (rf"{API}/tasks/{TASK_ID}/retry", RetryHandler),
    (rf"{API}/tasks/{TASK_ID}/result/(?P<name>[A-Za-z0-9_.]+)", ResultArrayHandler),
    (rf"{API}/events", EventsHandler),
    (rf"{API}/health", HealthHandler),
    *metrics_handlers,
    (rf"{API}/.*", UnknownRouteHandler),  # last: what no route above matched
]
