"""Job handlers. ``handle_request`` runs inside an executor child process only."""

from __future__ import annotations

from typing import Any

from .common import versions


def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    """One request from the worker: {"kind", "tasks": [{"task_id", "payload"}], ...}."""
    kind = request["kind"]
    if kind == "simulate":
        from .simulate import run_group

        return run_group(request)
    if kind == "convert":
        from .convert import run_many

        return run_many(request)
    if kind == "ping":
        return {"pong": True}
    raise ValueError(f"unknown request kind {kind!r}")


__all__ = ["handle_request", "versions"]
