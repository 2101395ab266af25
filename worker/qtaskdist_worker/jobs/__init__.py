"""Job handlers. ``handle_request`` runs inside an executor child process only."""

from __future__ import annotations

from qtaskdist_jupyter.core.kinds import KINDS, load

from .common import versions
from .protocol import JobRequest, Pong, UnitReply


def handle_request(request: JobRequest) -> UnitReply | Pong:
    """One request from the worker: {"kind", "units": [[{"task_id", "payload"}]], ...}.

    ``kind``: a ``pool``-lane task type, whose spec names its job (core/kinds.py), or
    ``"ping"``."""
    kind = request["kind"]
    if kind == "ping":
        return {"pong": True}
    spec = KINDS.get(kind)
    if spec is None or spec.lane != "pool":
        raise ValueError(f"unknown request kind {kind!r}")
    # The jobs load qiskit and Aer (and the QIR converter); the worker's own process
    # imports this package (jobs.common) and must not load them: imported here, by name.
    return load(spec.job)(request)


def warm_up() -> None:
    """Pay every first-call cost before the job process says it is ready, not inside a
    task's time: each pool type's warm-up (Aer's first run, kernels and OpenMP pool; the
    OpenQASM 3 parser; the QIR converter's imports and first conversion)."""
    for spec in KINDS.values():
        if spec.lane == "pool" and spec.warm_up:
            load(spec.warm_up)()


__all__ = ["handle_request", "versions", "warm_up"]
