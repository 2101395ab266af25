"""Helpers shared by the job handlers: circuit loading and error reports."""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import QtaskdistError

from .protocol import Failure, Versions

if TYPE_CHECKING:  # the codec imports qiskit: loaded only to parse a circuit
    from qtaskdist_jupyter.core.circuits.codec import CircuitFormat

log = logging.getLogger("qtaskdist_worker.errors")
_TRACEBACK_CHARS = 16_000
_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s'\"<>]+", re.IGNORECASE)
_HOST_PORT = re.compile(r"host='[^']*'(, port=\d+)?|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")
# Absolute paths of two or more parts (/home/u/x.py, C:\\x\\y); "1/2" is not one.
_PATH = re.compile(r"(?<![\w.])(?:/[\w.\-]+){2,}/?|\b[A-Za-z]:\\[\w.\-\\]+")


def versions() -> Versions:
    # Called in a job process only: the worker's own process never loads qiskit for it.
    import qiskit
    import qiskit_aer

    return {"qiskit_version": qiskit.__version__, "aer_version": qiskit_aer.__version__}


# The last limits built, and the fields they were built from: a job process hands every
# unit the one dict it was started with, so they are built once.
_BUILT: list[tuple[Mapping[str, float], Limits]] = []


def limits_from(data: Mapping[str, float] | None) -> Limits:
    """The worker's limits from a request's ``limits`` (its fields; None: the defaults)."""
    if not data:
        return Limits()
    if _BUILT and _BUILT[0][0] is data:
        return _BUILT[0][1]
    limits = replace(Limits(), **data)
    _BUILT[:] = [(data, limits)]
    return limits


def load_circuit(source: str, fmt: CircuitFormat, limits: Limits) -> Any:
    """Parse the task's circuit with the shared codec (CircuitError on bad input)."""
    # The codec imports qiskit; the worker's own process imports this module for
    # error_report and loads qiskit only if it runs backend_run tasks.
    from qtaskdist_jupyter.core.circuits import codec

    # quick: an OpenQASM 2 program whose cheap bound is within this worker's limits skips
    # the token scan (the server scanned it at submit; this process is bounded itself).
    return codec.load_circuit(source, fmt, limits=limits, quick=True)


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return line[:500]


def error_report(exc: BaseException, *, prefix: str = "") -> Failure:
    """A failed task: one clear line for its owner, and whether to retry.

    The traceback (source paths, service URLs) is for operators: it goes to this
    process's log under ``error_id``, which the task carries (``meta_data.error_id``)."""
    retryable = bool(getattr(exc, "retryable", False))
    if not isinstance(exc, QtaskdistError):
        # Aer and converter errors are deterministic: the same input fails the same way.
        retryable = False
    error_id = uuid.uuid4().hex[:16]
    log.error(
        "error %s (%s): %s\n%s",
        error_id,
        type(exc).__name__,
        first_line(exc),
        "".join(traceback.format_exception(exc))[-_TRACEBACK_CHARS:],
    )
    return {
        "ok": False,
        "error": public_text(f"{prefix}{first_line(exc)}"),
        "error_type": type(exc).__name__,
        "error_id": error_id,
        "retryable": retryable,
    }


def public_text(text: str) -> str:
    """``text`` without what a user must not read: URLs, host:port, absolute paths."""
    text = _URL.sub("<url>", text)
    text = _HOST_PORT.sub("<host>", text)
    return _PATH.sub("<path>", text)
