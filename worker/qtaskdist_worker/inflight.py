"""What a worker holds: the registry of tasks it claimed and has not settled, and the
decoding of stream entries into messages it may claim."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from qtaskdist_jupyter.core.broker.wire import MalformedMessage, TaskMessage, streams_of

from .units import InFlight

log = logging.getLogger("qtaskdist_worker")
# A stream entry as XREADGROUP / XAUTOCLAIM return it: (stream, entry id, fields).
Entry = tuple[str, str, dict[str, str]]
# A decoded entry: (stream, entry id, message).
Claimable = tuple[str, str, TaskMessage]
# A message for stream:dead: (reason, fields).
DeadLetter = tuple[str, dict[str, str]]


@dataclass
class InFlightRegistry:
    """The tasks this worker claimed and has not yet settled, by task id.

    A :class:`~collections.abc.Collection` of task ids, so the reconciler can read it as a
    live view of what this worker runs."""

    items: dict[uuid.UUID, InFlight] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.items

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(list(self.items))

    def add(self, item: InFlight) -> None:
        self.items[item.task_id] = item

    def get(self, task_id: uuid.UUID) -> InFlight | None:
        return self.items.get(task_id)

    def remove(self, items: list[InFlight]) -> None:
        for item in items:
            self.items.pop(item.task_id, None)

    def all(self) -> list[InFlight]:
        return list(self.items.values())

    def clear(self) -> None:
        self.items.clear()

    def entries_by_stream(self) -> dict[str, list[str]]:
        by_stream: dict[str, list[str]] = {}
        for item in list(self.items.values()):
            by_stream.setdefault(item.stream, []).append(item.entry_id)
        return by_stream

    def holds_entry(self, entry_id: str) -> bool:
        return any(i.entry_id == entry_id for i in self.items.values())

    def cancel(self, item: InFlight) -> None:
        """Stop a task whose row says it was cancelled (or moved on) while it runs."""
        if not item.cancelled:
            log.info("task %s was cancelled; stopping it", item.task_id)
        item.cancelled = True
        if item.cancel is not None:
            item.cancel.set()


def decode_entries(
    entries: list[Entry], acks: list[tuple[str, str]], dead: list[DeadLetter]
) -> list[Claimable]:
    """The entries' messages; a malformed one (or one on the wrong stream) is queued for
    stream:dead with the reason and for an ack, so it never comes back."""
    out = []
    for stream, eid, fields in entries:
        try:
            msg = TaskMessage.decode(fields)
            if stream not in streams_of(msg.task_type):
                raise MalformedMessage(f"a {msg.task_type} message on {stream}")
        except MalformedMessage as exc:
            log.error("dead-lettering %s %s: %s", stream, eid, exc)
            dead.append((str(exc), {**fields, "stream": stream, "entry_id": eid}))
            acks.append((stream, eid))
            continue
        out.append((stream, eid, msg))
    return out
