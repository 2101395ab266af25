"""Job handlers. ``handle_request`` runs inside an executor child process only."""

from __future__ import annotations

from typing import Any

from .common import versions


def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    """One request from the worker: {"kind", "tasks": [{"task_id", "payload"}], ...}."""
    kind = request["kind"]
    # The handlers load qiskit and Aer (and the QIR converter); the worker's own process
    # imports this package (jobs.common) and must not load them.
    if kind == "simulate":
        from .simulate import run_group

        return run_group(request)
    if kind == "convert":
        from .convert import run_many

        return run_many(request)
    if kind == "ping":
        return {"pong": True}
    raise ValueError(f"unknown request kind {kind!r}")


def warm_up() -> None:
    """Pay every first-call cost before the job process says it is ready, not inside a
    task's time: Aer's first run (kernels, OpenMP pool), the OpenQASM 3 parser, and the
    QIR converter's imports and first conversion."""
    # Local imports for the reason given in handle_request.
    from .convert import warm_up as warm_convert
    from .simulate import warm_up as warm_simulate

    warm_simulate()
    warm_convert()


__all__ = ["handle_request", "versions", "warm_up"]
