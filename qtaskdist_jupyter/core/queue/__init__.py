"""The queue facade (:class:`~.queue.TaskQueue`, and :class:`~.upkeep.Upkeep` for the
fleet's own writes) over its store and broker ports, and the frozen rows and events that
cross it."""

from qtaskdist_jupyter.core.queue.ports import BrokerPort, Retrying, StorePort, once
from qtaskdist_jupyter.core.queue.queue import TaskQueue
from qtaskdist_jupyter.core.queue.rows import EventPage, TaskEvent, TaskRow
from qtaskdist_jupyter.core.queue.upkeep import Upkeep, purge

__all__ = [
    "BrokerPort",
    "EventPage",
    "Retrying",
    "StorePort",
    "TaskEvent",
    "TaskQueue",
    "TaskRow",
    "Upkeep",
    "once",
    "purge",
]
