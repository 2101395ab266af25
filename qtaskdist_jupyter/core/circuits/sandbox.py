"""Untrusted circuits are parsed in a small pool of warm child processes.

The scans in :mod:`.qasm_scan` and :mod:`.codec` bound what a circuit may declare before
any parser sees it; this is the second line of defence, for what they miss and for
bugs in the parsers themselves. Each child (:mod:`.sandbox_child`) runs under an
address-space limit; each request has a deadline. A child that runs out of memory,
crashes or overruns its deadline is replaced, and the request is refused with one line
(422): the server itself neither grows nor stops.

Requests and answers are length-prefixed JSON (no pickle): the circuit text goes in,
its plain facts (:class:`.codec.CircuitInfo`) come back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import (
    CircuitError,
    IncludeRefused,
    InvalidInput,
    LimitExceeded,
    PayloadTooLarge,
)

_REFUSALS: dict[str, type[InvalidInput]] = {
    c.__name__: c for c in (CircuitError, IncludeRefused, LimitExceeded, PayloadTooLarge)
}
_CHILD_MODULE = "qtaskdist_jupyter.core.circuits.sandbox_child"
_START_TIMEOUT_S = 120.0  # importing qiskit on a busy machine


class _Child:
    def __init__(self, memory_bytes: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qtaskdist_jupyter.core.circuits.sandbox_child",
                str(memory_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.ready = False

    def read(self, deadline: float) -> dict[str, Any] | None:
        """One answer, or None when the child died or the deadline passed."""
        head = self._read_exact(4, deadline)
        body = head and self._read_exact(struct.unpack("!I", head)[0], deadline)
        return json.loads(body) if body is not None and head else None

    def _read_exact(self, size: int, deadline: float) -> bytes | None:
        fd, buf = self.proc.stdout.fileno(), bytearray()  # type: ignore[union-attr]
        while len(buf) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def ask(self, request: dict[str, Any], time_s: float) -> dict[str, Any] | None:
        if not self.ready:
            self.ready = self.read(time.monotonic() + _START_TIMEOUT_S) is not None
            if not self.ready:
                return None
        body = json.dumps(request).encode()
        try:
            self.proc.stdin.write(struct.pack("!I", len(body)) + body)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            return None
        return self.read(time.monotonic() + time_s)

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        return code


class ParsePool:
    """``size`` warm children; :meth:`inspect` is thread-safe (one request per child)."""

    def __init__(self, size: int, memory_bytes: int, time_s: float) -> None:
        self.size, self.memory_bytes, self.time_s = size, memory_bytes, time_s
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # One child now (it warms up beside the server); more while all are busy.
        self._started = 1
        self._idle.put(_Child(memory_bytes))

    @classmethod
    def from_limits(cls, limits: Limits) -> ParsePool | None:
        """The pool the limits ask for; None when ``parse_workers`` is 0 (parse in-process)."""
        if limits.parse_workers == 0:
            return None
        return cls(limits.parse_workers, limits.parse_memory_bytes, limits.parse_time_s)

    def _take(self) -> _Child:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._started < self.size
                self._started += grow
            return _Child(self.memory_bytes) if grow else self._idle.get()

    def inspect(self, source: str, fmt: str, limits: Limits) -> Any:
        """:func:`.codec.inspect_circuit` in a child; its refusals re-raised here."""
        from qtaskdist_jupyter.core.circuits.codec import CircuitInfo
        from qtaskdist_jupyter.core.circuits.precheck import precheck

        precheck(source, fmt, limits)  # what needs no parse to refuse, without a child
        child = self._take()
        request = {"source": source, "format": fmt, "limits": dataclasses.asdict(limits)}
        started = time.monotonic()
        got: dict[str, Any] | None = None
        code: int | None = None
        try:
            got = child.ask(request, self.time_s)
        finally:
            if got is None or got.get("refused") == "MemoryError":
                code = child.kill()  # stuck, dead or short of memory: a fresh one
                child = _Child(self.memory_bytes)
            if self._closed.is_set():
                child.kill()
            else:
                self._idle.put(child)
        if got is None or got.get("refused") == "MemoryError":
            raise self._failure(got, code, time.monotonic() - started)
        if "refused" in got:
            cls = _REFUSALS.get(got["refused"], CircuitError)
            raise cls(str(got["message"]), **dict(got["detail"]))
        return CircuitInfo(**got["info"])

    def _failure(self, got: dict[str, Any] | None, code: int | None, took_s: float) -> CircuitError:
        mib = self.memory_bytes // 2**20
        if got is None and took_s >= self.time_s:
            why = f"took longer than {self.time_s:g} s to parse (QTASKDIST_PARSE_TIME_S)"
        elif got is not None or code in (-6, -9):  # MemoryError; an allocation abort; OOM kill
            why = f"needs more than {mib} MiB to parse (QTASKDIST_PARSE_MEMORY_BYTES)"
        else:
            why = f"made the circuit parser stop (exit code {code})"
        return CircuitError(f"the circuit {why}; it is refused", limit="parse")

    def close(self) -> None:
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return
