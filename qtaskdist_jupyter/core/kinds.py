"""The task types: one frozen :class:`TaskKind` spec each, registered in :data:`KINDS`.

The one home of the task-type names and of the facts every side reads (docs/task-kinds.md):
the broker names each type's streams from :attr:`TaskKind.stream` (``broker.keys``), the
schemas check payloads with :attr:`TaskKind.payload_model`, the worker reads the lanes and
runs :attr:`TaskKind.job`, the submit checks read :attr:`TaskKind.rules`, the client and the
magic find a type by its :attr:`TaskKind.verb`, and the live table lists :data:`TASK_TYPES`.

A domain module: it imports nothing of the store, the broker, the circuit codec or the
worker. The payload model and the job are dotted names (``module:attribute``), imported
where they are used (:func:`load`), so a kernel reading the names loads neither pydantic
schemas nor qiskit.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

V = TypeVar("V")

Lane = Literal["pool", "backend"]
# The Aer memory estimate a submit makes: of the payload's own run options ("payload"),
# only when the task runs on the local Aer device ("local_device"), or none.
MemoryCheck = Literal["payload", "local_device", "none"]


@dataclass(frozen=True)
class ResultRules:
    """What the submit checks and the worker's planning know of a type's results."""

    # The submit refuses a task whose counts / arrays would pass max_result_bytes.
    size_checked: bool = False
    memory_check: MemoryCheck = "none"
    # The payload may carry observables, checked against the circuit at submit.
    observables: bool = False
    # Tasks with equal run options share one Aer call (units.batch_key), and a lone
    # large sweep may borrow the idle job processes' threads (Dispatcher._lent_threads).
    shares_aer_calls: bool = False


@dataclass(frozen=True)
class TaskKind:
    """One task type. ``job``: for the ``pool`` lane, a function of one request (run in a
    job process, ``{"kind", "units", "threads"}`` → replies); for the ``backend`` lane, a
    coroutine of (claimed row, its BackendRunner, cancel event, time limit) polled on the
    worker's event loop. ``warm_up``: a function a job process calls before it is ready."""

    name: str
    # The task stream's name (broker.keys prefixes "stream:").
    stream: str
    payload_model: str
    lane: Lane
    job: str
    # The magic's cell action (``%%qtask <verb>``); the client's submit_* method of the
    # type names the spec (kernel/client.py).
    verb: str
    rules: ResultRules = ResultRules()
    warm_up: str | None = None


KINDS: dict[str, TaskKind] = {}
# Bumped by register / unregister: the maps derived from KINDS (KindMap) build again.
_GENERATION = [0]


def register(kind: TaskKind) -> TaskKind:
    """Add ``kind`` to :data:`KINDS` (a name or verb already taken is refused)."""
    taken = {k.name for k in KINDS.values()} | {k.verb for k in KINDS.values()}
    if kind.name in taken or kind.verb in taken - {kind.name}:
        raise ValueError(f"task type {kind.name!r} / verb {kind.verb!r} is taken")
    KINDS[kind.name] = kind
    _GENERATION[0] += 1
    return kind


def unregister(name: str) -> None:
    """Drop a registered kind (tests that register one of their own)."""
    if KINDS.pop(name, None) is not None:
        _GENERATION[0] += 1


def load(dotted: str) -> Any:
    """The object a ``module:attribute`` name points at, imported now."""
    module, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module), attribute)


def kind_of(name: str) -> TaskKind:
    """The spec of task type ``name`` (KeyError for an unknown one)."""
    return KINDS[name]


def by_verb(verb: str) -> TaskKind:
    """The spec whose client/magic verb is ``verb`` (KeyError for an unknown one)."""
    for kind in KINDS.values():
        if kind.verb == verb:
            return kind
    raise KeyError(verb)


def of_lane(lane: Lane, names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The registered types (of ``names``, in their order) that run on ``lane``."""
    chosen = list(KINDS) if names is None else [n for n in names if n in KINDS]
    return [n for n in chosen if KINDS[n].lane == lane]


class KindMap(Mapping[str, V], Generic[V]):
    """A map derived from :data:`KINDS` (see :func:`by_kind`), built again at the first
    look-up after :func:`register` / :func:`unregister`, so a kind registered after the
    import (a test's) is in it too. Change :data:`KINDS` only through those two."""

    def __init__(self, build: Callable[[], dict[str, V]]) -> None:
        self._build = build
        self._built_at = -1
        self._map: dict[str, V] = {}

    def _current(self) -> dict[str, V]:
        if self._built_at != _GENERATION[0]:
            self._map = self._build()
            self._built_at = _GENERATION[0]
        return self._map

    def __getitem__(self, name: str) -> V:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


def by_kind(fact: Callable[[TaskKind], V]) -> KindMap[V]:
    """task type -> ``fact(its spec)``, in the order of :data:`KINDS`."""
    return KindMap(lambda: {name: fact(kind) for name, kind in KINDS.items()})


def inverse(mapping: Mapping[str, str]) -> KindMap[str]:
    """value -> key of a map derived from the specs whose values are unique."""
    return KindMap(lambda: {v: k for k, v in mapping.items()})


_SCHEMAS = "qtaskdist_jupyter.core.schemas"
_JOBS = "qtaskdist_worker.jobs"
SIMULATE = register(
    TaskKind(
        name="simulate",
        stream="simulate",
        payload_model=f"{_SCHEMAS}:SimulatePayload",
        lane="pool",
        job=f"{_JOBS}.simulate:run_group",
        warm_up=f"{_JOBS}.simulate:warm_up",
        verb="simulate",
        rules=ResultRules(
            size_checked=True, memory_check="payload", observables=True, shares_aer_calls=True
        ),
    )
)
CONVERT = register(
    TaskKind(
        name="c_qir_convert",
        stream="c_qir",
        payload_model=f"{_SCHEMAS}:ConvertPayload",
        lane="pool",
        job=f"{_JOBS}.convert:run_many",
        warm_up=f"{_JOBS}.convert:warm_up",
        verb="convert",
    )
)
BACKEND = register(
    TaskKind(
        name="backend_run",
        stream="backend",
        payload_model=f"{_SCHEMAS}:BackendPayload",
        lane="backend",
        job=f"{_JOBS}.backend:run_backend",
        verb="run",
        rules=ResultRules(size_checked=True, memory_check="local_device"),
    )
)
# The built-in types, in the order views list them (the live table's facts).
TASK_TYPES: tuple[str, ...] = tuple(KINDS)
# task type -> the name of its task stream (broker.keys prefixes "stream:").
STREAM_NAMES: Mapping[str, str] = by_kind(lambda k: k.stream)
