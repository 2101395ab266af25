"""Submit-time checks: a task's payload and circuit into a NewTask, one task or a batch.

The circuit check (a full parse: nearly all of validation's cost) is memoized on the
circuit text alone, so a batch that sends one circuit many times, with other seeds, shots
or bindings, parses it once. The same text always checks the same.

A batch's circuits are parsed together (:meth:`.sandbox.ParsePool.inspect_many`: chunks of
circuits per request, the parse children side by side), then each task is checked in
order, so the error a refused batch gets is the one a task-by-task check would give: the
first task's, in order, that has one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from qtaskdist_jupyter.core.budget import check_submit
from qtaskdist_jupyter.core.circuits.bindings import check_bindings
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.core.schemas import (
    USER_META_KEY,
    BatchCreate,
    CircuitFormat,
    TaskCreate,
    validate_payload,
)
from qtaskdist_jupyter.core.store.store import NewTask

if TYPE_CHECKING:  # the codec imports qiskit: loaded at start-up, not at import
    from qtaskdist_jupyter.core.circuits.codec import CircuitInfo
    from qtaskdist_jupyter.core.circuits.sandbox import ParsePool

# Circuits that passed the check, kept per service: entries and the largest key (bounds
# its memory).
MEMO_SIZE = 256
MEMO_MAX_KEY = 64 * 1024


def memo_key(payload: JsonMap) -> str:
    return f"{payload.get('circuit_format', 'auto')}\0{payload['circuit']}"


def circuit_of(payload: JsonMap) -> tuple[str, CircuitFormat]:
    """The circuit text and format of a payload validate_payload returned (its model
    checked both: a string, and one of CircuitFormat's names)."""
    source, fmt = payload["circuit"], payload.get("circuit_format", "auto")
    assert isinstance(source, str) and isinstance(fmt, str), "a validated payload"
    return source, cast("CircuitFormat", fmt)


class Checker:
    """Payloads and circuits checked against ``limits``; circuits parsed by ``parser``
    (None: in this process, after the same scans)."""

    def __init__(self, limits: Limits, parser: ParsePool | None) -> None:
        self.limits = limits
        self.parser = parser
        self.memo: dict[str, CircuitInfo] = {}

    def inspect_many(
        self, items: Sequence[tuple[str, CircuitFormat]]
    ) -> list[CircuitInfo | InvalidInput | None]:
        """Each circuit's facts or its refusal (not raised), in order; None: not parsed,
        as one before it broke a parse child (see ParsePool.inspect_many)."""
        if self.parser is not None:
            return self.parser.inspect_many(items, self.limits)
        from qtaskdist_jupyter.core.circuits import codec

        out: list[CircuitInfo | InvalidInput | None] = []
        for source, fmt in items:
            try:
                out.append(codec.inspect_circuit(source, fmt, limits=self.limits))
            except InvalidInput as exc:
                out.append(exc)
        return out

    def info(self, payload: JsonMap, memo: dict[str, CircuitInfo]) -> CircuitInfo:
        """The circuit's facts, from ``memo`` or parsed (and kept there); refusals raised."""
        key = memo_key(payload)
        info = memo.get(key)
        if info is None:
            (got,) = self.inspect_many([circuit_of(payload)])
            if isinstance(got, InvalidInput):
                raise got
            assert got is not None, "one circuit: parsed or refused, never skipped"
            info = got
            remember(memo, key, info)
        return info

    def memoized(self, payload: Any) -> bool:
        """Whether ``payload``'s circuit (as sent) passed the check before."""
        if not isinstance(payload, dict) or not isinstance(payload.get("circuit"), str):
            return False
        return memo_key(payload) in self.memo

    def new_task(
        self,
        spec: TaskCreate,
        owner: str,
        batch_id: uuid.UUID | None = None,
        memo: dict[str, CircuitInfo] | None = None,
    ) -> NewTask:
        """Validate the payload for its task_type (and its circuit) into a NewTask;
        ``memo`` defaults to this checker's bounded memo, shared by requests."""
        payload = validate_payload(spec.task_type, spec.payload, self.limits)
        info = self.info(payload, self.memo if memo is None else memo)
        return self._checked(spec, payload, info, owner, batch_id)

    def _checked(
        self,
        spec: TaskCreate,
        payload: JsonObject,
        info: CircuitInfo,
        owner: str,
        batch_id: uuid.UUID | None,
    ) -> NewTask:
        check_bindings(payload, info.parameters)
        check_submit(spec.task_type, payload, info, self.limits)
        return NewTask(
            task_type=spec.task_type,
            payload=payload,
            owner=owner,
            name=spec.name,
            tags=spec.tags,
            max_retries=spec.max_retries,
            batch_id=spec.batch_id or batch_id,
            # The user's part of meta_data; every other key is the system's.
            meta_data={USER_META_KEY: labels} if (labels := spec.user_labels()) else None,
        )

    def batch(self, spec: BatchCreate, owner: str, batch_id: uuid.UUID) -> list[NewTask]:
        """Every task of ``spec`` checked, or the first refusal in task order, raised
        with its index (``tasks[i]``, field ``tasks.i.…``)."""
        payloads: list[JsonObject] = []
        first_bad: tuple[int, InvalidInput] | None = None
        for i, t in enumerate(spec.tasks):
            try:
                payloads.append(validate_payload(t.task_type, t.payload, self.limits))
            except InvalidInput as exc:
                first_bad = (i, exc)
                break
        found = self._parse_new(payloads)
        out = []
        for i, t in enumerate(spec.tasks):
            try:
                if first_bad is not None and i == first_bad[0]:
                    raise first_bad[1]
                key = memo_key(payloads[i])
                info = found[key] if key in found else self.memo.get(key)
                if info is None:  # not parsed (one before it broke a child), or evicted
                    info = self.info(payloads[i], self.memo)
                if isinstance(info, InvalidInput):
                    raise info
                n = self._checked(t, payloads[i], info, owner, batch_id)
            except InvalidInput as exc:
                at_index(exc, i)
                raise
            n.task_id = uuid.uuid4()
            out.append(n)
        return out

    def _parse_new(
        self, payloads: list[JsonObject]
    ) -> dict[str, CircuitInfo | InvalidInput | None]:
        """Facts or refusals of the distinct circuits not in the memo, parsed together;
        the facts are kept in the memo."""
        todo: dict[str, tuple[str, CircuitFormat]] = {}
        for p in payloads:
            if (k := memo_key(p)) not in self.memo:
                todo[k] = circuit_of(p)
        found = dict(zip(todo, self.inspect_many(list(todo.values())), strict=True))
        for k, got in found.items():
            if got is not None and not isinstance(got, InvalidInput):
                remember(self.memo, k, got)
        return found


def at_index(exc: InvalidInput, i: int) -> None:
    exc.detail["field"] = f"tasks.{i}.{exc.field or 'payload'}"
    exc.detail["index"] = i
    exc.message = f"tasks[{i}]: {exc.message}"


def remember(memo: dict[str, CircuitInfo], key: str, info: CircuitInfo) -> None:
    if len(key) > MEMO_MAX_KEY:
        return
    memo[key] = info
    if len(memo) > MEMO_SIZE:
        # Oldest first (dict order); another validating thread may race us.
        with contextlib.suppress(RuntimeError, StopIteration):
            memo.pop(next(iter(memo)), None)
