"""The messages between a worker and its job processes (:mod:`..executor`), as they cross
the pipe as JSON: the request of units the worker sends, what a job process hands its job
for one unit, the unit's reply, and each task's outcome in it.

Plain dicts at run time (``TypedDict``): the hot path builds and reads them as before.
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict

from qtaskdist_jupyter.core.jsontypes import JsonObject


class UnitTask(TypedDict):
    """One task of a unit: its id as text, and its stored payload."""

    task_id: str
    payload: JsonObject


class PoolRequest(TypedDict):
    """What :meth:`ExecutorPool.run` sends a job process: units it runs one after another,
    and the Aer threads lent to them (None: the pool's own)."""

    kind: str
    units: list[list[UnitTask]]
    threads: int | None


class JobRequest(TypedDict, total=False):
    """What a job process hands the job of its kind for one unit (``jobs.handle_request``).

    ``limits``: the worker's :class:`~qtaskdist_jupyter.core.config.Limits` as a dict of its
    fields (None or absent: the defaults); ``lent_threads``: ``threads`` were lent by idle
    job processes."""

    kind: Required[str]
    tasks: Required[list[UnitTask]]
    threads: int
    limits: dict[str, float] | None
    spool_dir: str | None
    lent_threads: bool


class Success(TypedDict):
    """A task that ran: its result, and the keys to merge into its meta_data."""

    ok: Literal[True]
    result: JsonObject
    meta: JsonObject


class Failure(TypedDict, total=False):
    """A task that failed: one line for its owner, and whether a retry may help.
    ``error_id`` names the traceback in the job process's log; ``meta``: keys to merge
    into its meta_data (e.g. a QIR mismatch's figures)."""

    ok: Required[Literal[False]]
    error: Required[str]
    error_type: str
    error_id: str
    retryable: bool
    meta: JsonObject


# A task's end as its job reports it; ``outcome["ok"] is True`` tells which.
Outcome = Success | Failure


class _Timed(TypedDict, total=False):
    # Seconds the unit ran in the job process (set by the job process, not the job).
    wall_s: float


class UnitReply(_Timed):
    """A unit's reply: each task's outcome by task id."""

    replies: dict[str, Outcome]


class Pong(_Timed):
    """The reply to a ``"ping"`` request."""

    pong: bool


class Versions(TypedDict):
    """The job process's qiskit and Aer versions (stored in each task's meta_data)."""

    qiskit_version: str
    aer_version: str


class Ready(Versions):
    """A job process's first message: it is ready, under this address-space limit (0:
    none)."""

    ready: bool
    rlimit_as: int
