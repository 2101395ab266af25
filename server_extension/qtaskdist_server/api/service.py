"""TaskService: the REST API's policy over the queue; the one way the API reaches the queue.

Each handler parses its request, makes one call here and answers its result as JSON. This
module holds the API's rules: quotas, the priority lane's bound, the payload checks (the
CPU-bound circuit checks moved off the event loop) and which status a user may move a task
to. Every write, and the order of the writes, is the queue facade's
(:class:`~qtaskdist_jupyter.core.queue.TaskQueue`: row first, then message, then event);
the store and the broker are used here for reads only. Its read-only verbs (rows, pages,
arrays, events, fleet views) are inherited from reads.TaskReads.

Quotas (quota.py): a submission is counted from its number of tasks before any circuit is
checked, then counted again and inserted under its owner's advisory lock (the ``decide``
TaskQueue.submit and TaskQueue.retry run under it), so the active-task cap and the
priority lane's bound hold for concurrent requests too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.errors import (
    InvalidInput,
    TransitionError,
)
from qtaskdist_jupyter.core.models import TaskStatus
from qtaskdist_jupyter.core.queue import TaskQueue
from qtaskdist_jupyter.core.retention import check_stored_tasks
from qtaskdist_jupyter.core.schemas import (
    BatchCreate,
    TaskCreate,
    TaskUpdate,
)
from qtaskdist_jupyter.core.store.shapes import EventRow, TaskRecord
from qtaskdist_jupyter.core.store.store import NewTask, TaskStore
from qtaskdist_server.api import access, quota
from qtaskdist_server.api.checks import Checker
from qtaskdist_server.api.reads import TaskReads

if TYPE_CHECKING:  # the codec imports qiskit: loaded at start-up, not at import
    from qtaskdist_jupyter.core.circuits.sandbox import ParsePool


class TaskService(TaskReads):
    def __init__(
        self,
        store: TaskStore,
        broker: Broker,
        settings: Settings,
        parser: ParsePool | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        # Every write goes through the queue facade; the store and the broker are read here.
        self.queue = TaskQueue(store, broker)
        self.settings = settings
        # Request bodies over large_body_bytes in flight per owner (the hosts count them).
        self.large_bodies = quota.LargeBodies()
        self.redactor = access.Redactor()
        # Circuits are parsed in child processes under memory and time limits (None:
        # in this process, after the same scans).
        self.parser = parser
        self.checks = Checker(settings.limits, parser)

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int = 5) -> TaskService:
        assert settings.database_url and settings.redis_url, "resolve embedded URLs first"
        # The circuit checker imports qiskit (seconds) and loads the QASM 3 parser on its
        # first use: both at start-up, not in the first request.
        from qtaskdist_jupyter.core.circuits import codec
        from qtaskdist_jupyter.core.circuits.sandbox import ParsePool

        parser = ParsePool.from_limits(settings.limits)  # its child warms up beside us
        codec.warm_up()
        if parser is not None:
            parser.wait_ready()
        return cls(
            TaskStore.from_url(settings.database_url, pool_size=pool_size),
            Broker.from_url(settings.redis_url, events_maxlen=settings.events_maxlen),
            settings,
            parser,
        )

    async def close(self) -> None:
        if self.parser is not None:
            self.parser.close()
        await self.store.close()
        await self.broker.close()

    async def admit_count(self, owner: str, n: int) -> None:
        """A batch of ``n`` tasks: within max_batch_tasks (422) and the owner's active
        quota (429), from the count alone."""
        quota.check_batch_size(n, self.settings.limits)
        await self.precheck(owner, n)

    async def precheck(self, owner: str, n: int) -> None:
        """The active-task quota from the number of tasks alone, before any circuit is
        checked: a request that can't be admitted costs one count. Not the guard itself
        (requests race): that is quota.admit under the owner's lock, with the insert."""
        quota.admit(await self.store.active_of(owner), n, self.settings.limits)

    async def create_admitted(
        self, owner: str, new: Sequence[NewTask], *, enqueue: bool, full: bool = False
    ) -> list[EventRow]:
        """:meth:`create` under ``owner``'s quotas: counted and inserted under their lock
        (429 past max_active_tasks or max_stored_tasks, nothing written), then published;
        a small submission goes to the priority streams."""
        limits = self.settings.limits

        def decide(active: int, stored: int) -> bool:
            check_stored_tasks(stored, len(new), limits.max_stored_tasks)
            return quota.admit(active, len(new), limits)

        return await self.queue.submit(owner, new, decide, enqueue=enqueue, full=full)

    async def create(
        self, new: Sequence[NewTask], *, enqueue: bool, full: bool = False, priority: bool = False
    ) -> list[EventRow]:
        """Insert all rows at once; with ``enqueue``, queue them too (on the priority
        streams with ``priority``). ``full`` returns every column as written (few rows
        only), so a single POST needs no second read."""
        if new:  # new rows count against their owner's stored tasks (retries do not)
            cap = self.settings.limits.max_stored_tasks
            check_stored_tasks(await self.store.stored_of(new[0].owner), len(new), cap)
        return await self.queue.insert(new, enqueue=enqueue, full=full, priority=priority)

    async def delete(self, task_id: uuid.UUID, owner: str | None) -> None:
        await self.queue.delete(task_id, owner)

    async def cancel(self, task_id: uuid.UUID, owner: str | None) -> TaskRecord:
        await self.queue.cancel(task_id, owner)
        return await self.store.get(task_id, owner)

    # ---- the REST API's verbs --------------------------------------------------------
    async def submit(self, owner: str, spec: TaskCreate) -> EventRow:
        """POST tasks: one task checked, admitted and written; its row as written.

        The count before the check saves a parse for a request the quota refuses; a
        circuit already in the memo needs no parse, so it goes straight to the admission
        (which counts under the owner's lock anyway)."""
        if not self.checks.memoized(spec.payload):
            await self.precheck(owner, 1)
        # The circuit check parses up to max_payload_bytes of QASM: off the event loop.
        new = await asyncio.to_thread(self.checks.new_task, spec, owner)
        (row,) = await self.create_admitted(owner, [new], enqueue=spec.enqueue, full=True)
        return row

    async def submit_batch(self, owner: str, spec: BatchCreate) -> tuple[uuid.UUID, list[str]]:
        """POST tasks/batch: every task checked before any row exists; (batch id, task ids)."""
        await self.admit_count(owner, len(spec.tasks))
        batch_id = spec.batch_id or uuid.uuid4()
        new = await asyncio.to_thread(self.checks.batch, spec, owner, batch_id)
        await self.create_admitted(owner, new, enqueue=spec.enqueue)
        return batch_id, [str(n.task_id) for n in new]

    async def update(self, task_id: uuid.UUID, owner: str, change: TaskUpdate) -> TaskRecord:
        """PATCH tasks/{id}: move the status (if asked), then set the plain fields."""
        fields = change.model_dump(exclude_unset=True, exclude={"status", "labels", "meta_data"})
        # name may be cleared; the other columns are NOT NULL, so null means "leave it".
        fields = {k: v for k, v in fields.items() if v is not None or k == "name"}
        if (labels := change.user_labels()) is not None:
            fields["labels"] = labels
        row = None
        if change.status is not None:
            row = await self._move(task_id, owner, change.status)
        if fields:
            row = await self.queue.update(task_id, owner, fields)
        return row if row is not None else await self.store.get(task_id, owner)

    async def _move(self, task_id: uuid.UUID, owner: str, target: TaskStatus) -> TaskRecord:
        """The one status change a client asks for, routed on the row's current status."""
        row = await self.store.get(task_id, owner)
        current = row["status"]
        if target == TaskStatus.CANCELLED:
            return await self.cancel(task_id, owner)
        if target == TaskStatus.QUEUED and current == TaskStatus.PENDING:
            return await self._enqueue(task_id, owner, current)
        if target == TaskStatus.QUEUED and current in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            return await self._retry(task_id, owner)
        raise TransitionError(
            f"cannot move task {task_id} from {current} to {target}: a client may only "
            "cancel, enqueue a pending task, or retry a failed/cancelled one",
            task_id=str(task_id),
            status=current,
        )

    async def enqueue(
        self, task_id: uuid.UUID, owner: str, task_type: str | None = None
    ) -> TaskRecord:
        """POST tasks/{id}/enqueue: a pending task onto its stream; ``task_type`` is the
        caller's guard (refused when the task is of another type)."""
        row = await self.store.get(task_id, owner)
        if task_type and task_type != row["task_type"]:
            raise InvalidInput(
                f"task {task_id} is a {row['task_type']} task, not {task_type}", field="task_type"
            )
        return await self._enqueue(task_id, owner, row["status"])

    async def _enqueue(self, task_id: uuid.UUID, owner: str, status: object) -> TaskRecord:
        """Queue ``owner``'s task ``task_id``, which the store read as ``status``."""
        if status != TaskStatus.PENDING:
            raise TransitionError(
                f"cannot enqueue task {task_id}: it is {status} (allowed from pending)",
                task_id=str(task_id),
                status=status,
            )
        await self.broker.ping()
        # The row is pending, so already counted among the owner's active tasks.
        small = await self.store.active_of(owner) <= self.settings.limits.priority_max_tasks
        await self.queue.enqueue([task_id], priority=small)
        return await self.store.get(task_id, owner)

    async def retry(self, task_id: uuid.UUID, owner: str) -> TaskRecord:
        """POST tasks/{id}/retry: a failed or cancelled task queued for another attempt."""
        await self.store.get(task_id, owner)  # 404 before the quota says anything
        return await self._retry(task_id, owner)

    async def _retry(self, task_id: uuid.UUID, owner: str) -> TaskRecord:
        limits = self.settings.limits
        await self.precheck(owner, 1)
        await self.queue.retry(task_id, owner, lambda active: quota.admit(active, 1, limits))
        return await self.store.get(task_id, owner)
