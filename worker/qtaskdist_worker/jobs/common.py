"""Helpers shared by the job handlers: circuit loading and error reports."""

from __future__ import annotations

import traceback
from typing import Any

from qtaskdist_jupyter.config import Limits
from qtaskdist_jupyter.errors import JobError, PermanentJobError, QtaskdistError


def versions() -> dict[str, str]:
    import qiskit
    import qiskit_aer

    return {"qiskit_version": qiskit.__version__, "aer_version": qiskit_aer.__version__}


def limits_from(data: dict[str, Any] | None) -> Limits:
    return Limits(**data) if data else Limits()


def load_circuit(source: str, fmt: str, limits: Limits) -> Any:
    """Parse the task's circuit with the shared codec (CircuitError on bad input)."""
    try:
        from qtaskdist_jupyter import codec
    except ImportError:  # pragma: no cover - only until the shared codec is installed
        return _plain_load(source, fmt)
    return codec.load_circuit(source, fmt, limits=limits)


def _plain_load(source: str, fmt: str) -> Any:
    from qiskit import qasm2, qasm3

    from qtaskdist_jupyter.errors import CircuitError

    try:
        if fmt == "qasm3" or (fmt == "auto" and "OPENQASM 3" in source[:200]):
            return qasm3.loads(source)
        return qasm2.loads(source, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except Exception as exc:  # noqa: BLE001
        raise CircuitError(f"cannot parse the circuit: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return line[:500]


def error_report(exc: BaseException, *, prefix: str = "") -> dict[str, Any]:
    """A failed task: one clear line, the traceback apart, and whether to retry."""
    retryable = bool(getattr(exc, "retryable", False))
    if not isinstance(exc, QtaskdistError):
        # Aer and converter errors are deterministic: the same input fails the same way.
        retryable = False
    return {
        "ok": False,
        "error": f"{prefix}{first_line(exc)}",
        "error_type": type(exc).__name__,
        "retryable": retryable,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }


def permanent(message: str) -> JobError:
    return PermanentJobError(message)
