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

import json
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core.circuits.sandbox_child import ParseRequest
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import (
    CircuitError,
    IncludeRefused,
    InvalidInput,
    LimitExceeded,
    PayloadTooLarge,
    ServiceUnavailable,
)
from qtaskdist_jupyter.core.jsontypes import JsonObject

if TYPE_CHECKING:  # the codec imports qiskit: loaded only where circuits are parsed
    from qtaskdist_jupyter.core.circuits.codec import CircuitInfo

_REFUSALS: dict[str, type[InvalidInput]] = {
    c.__name__: c for c in (CircuitError, IncludeRefused, LimitExceeded, PayloadTooLarge)
}
_CHILD_MODULE = "qtaskdist_jupyter.core.circuits.sandbox_child"
_START_TIMEOUT_S = 120.0  # importing qiskit on a busy machine
_MAX_ANSWER_BYTES = 16 * 2**20  # an answer is a few facts; more is a broken child
# Circuits per request to a child: a batch's circuits go out in chunks of this many, the
# children working on the chunks side by side; each answers one frame per circuit.
CHUNK = 64
_INFO_TYPES = {
    "format": str,
    "num_qubits": int,
    "num_clbits": int,
    "num_instructions": int,
    "parameters": list,
    "operations": list,
}


class _Child:
    def __init__(self, memory_bytes: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", _CHILD_MODULE, str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both PIPEs
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = False
        self.timed_out = False

    def read(self, deadline: float) -> JsonObject | None:
        """One answer, or None when the child died, overran or broke the protocol."""
        head = self._read_exact(4, deadline)
        size = struct.unpack("!I", head)[0] if head else _MAX_ANSWER_BYTES + 1
        body = self._read_exact(size, deadline) if size <= _MAX_ANSWER_BYTES else None
        try:
            got = json.loads(body) if body is not None else None
        except ValueError:
            return None
        return got if isinstance(got, dict) else None

    def _read_exact(self, size: int, deadline: float) -> bytes | None:
        fd, buf = self.stdout.fileno(), bytearray()
        while len(buf) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.timed_out = True
                return None
            chunk = os.read(fd, size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def start(self) -> bool:
        """Wait for the child's first frame (it has imported qiskit and warmed up)."""
        if not self.ready:
            self.ready = self.read(time.monotonic() + _START_TIMEOUT_S) is not None
        return self.ready

    def send(self, request: ParseRequest) -> bool:
        body = json.dumps(request).encode()
        try:
            self.stdin.write(struct.pack("!I", len(body)) + body)
            self.stdin.flush()
        except OSError:
            return False
        return True

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        return code


class ParsePool:
    """Up to ``size`` warm children; :meth:`inspect` is thread-safe (one request per child)."""

    def __init__(self, size: int, memory_bytes: int, time_s: float) -> None:
        self.size, self.memory_bytes, self.time_s = size, memory_bytes, time_s
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._started = 0
        # Every child now: they warm up beside the server, so that a batch's first chunks
        # do not wait for a child to import qiskit (a replaced child starts on demand).
        for _ in range(size):
            self._grow()

    @classmethod
    def from_limits(cls, limits: Limits) -> ParsePool | None:
        """The pool the limits ask for; None when ``parse_workers`` is 0 (parse in-process)."""
        if limits.parse_workers == 0:
            return None
        return cls(limits.parse_workers, limits.parse_memory_bytes, limits.parse_time_s)

    def wait_ready(self) -> bool:
        """Wait until an idle child has warmed up (a server calls this at start-up, so that
        its first submit does not wait for a child to import qiskit)."""
        child = self._idle.get()
        try:
            return child.start()
        finally:
            self._idle.put(child)

    def _grow(self) -> _Child | None:
        """A new child when fewer than ``size`` exist (it goes to the idle queue)."""
        with self._lock:
            if self._started >= self.size:
                return None
            self._started += 1
        try:
            child = _Child(self.memory_bytes)
        except OSError:
            with self._lock:
                self._started -= 1
            raise
        self._idle.put(child)
        return child

    def _give_back(self, child: _Child, broken: bool) -> None:
        if broken:  # killed by the caller: stuck, dead, short of memory or off the protocol
            with self._lock:
                self._started -= 1
        if self._closed.is_set():
            child.kill()
        elif broken:
            self._grow()
        else:
            self._idle.put(child)

    def inspect(self, source: str, fmt: str, limits: Limits) -> Any:
        """:func:`.codec.inspect_circuit` in a child; its refusals re-raised here."""
        (got,) = self.inspect_many([(source, fmt)], limits)
        if isinstance(got, InvalidInput):
            raise got
        return got

    def inspect_many(self, items: Sequence[tuple[str, str]], limits: Limits) -> list[Any]:
        """Each ``(source, format)``'s facts, or its refusal (an InvalidInput, not raised),
        in order. Up to :data:`CHUNK` circuits go to a child in one request, and the
        children work on the chunks side by side; each circuit keeps its own deadline
        (the child answers one frame per circuit) and its own memory limit (what a
        circuit allocated is freed before the next one is parsed).

        A circuit that breaks a child (deadline, memory, crash) is refused, and nothing
        after it is parsed: those entries are None, as a caller that stops at the first
        refusal never reads them. So a list of circuits that each hang costs one deadline
        per child, not one per circuit."""
        chunks = [range(k, min(k + CHUNK, len(items))) for k in range(0, len(items), CHUNK)]
        out: list[Any] = [None] * len(items)
        broke = [len(items)]  # the lowest index that broke a child so far

        def run(idx: range) -> None:
            if idx.start < broke[0]:
                at = self._inspect_chunk(items, idx, out, limits)
                broke[0] = min(broke[0], at)

        if len(chunks) == 1:
            run(chunks[0])
        elif chunks:
            with ThreadPoolExecutor(min(self.size, len(chunks))) as ex:
                list(ex.map(run, chunks))
        return out

    def _inspect_chunk(
        self, items: Sequence[tuple[str, str]], idx: range, out: list[Any], limits: Limits
    ) -> int:
        """:meth:`inspect_many` of ``items[idx]`` into ``out``, in one child; the index
        of the circuit that broke it (refused), or ``len(items)``."""
        from qtaskdist_jupyter.core.circuits.precheck import precheck

        send = []
        for k in idx:
            try:
                precheck(*items[k], limits)  # what needs no parse to refuse, without a child
                send.append(k)
            except InvalidInput as exc:
                out[k] = exc
        done, broken = self._ask_child([items[k] for k in send], limits)
        for k, got in zip(send, done, strict=False):
            out[k] = got
        return send[len(done) - 1] if broken else len(items)

    def _ask_child(self, items: list[tuple[str, str]], limits: Limits) -> tuple[list[Any], bool]:
        """One child's answers, in order, and whether a circuit broke it: then the last
        answer is that circuit's refusal, and the circuits after it have none."""
        if not items:
            return [], False
        child = self._take()
        answers: list[Any] = []
        got: JsonObject | None = None
        started = child.start()
        try:
            if started and child.send({"sources": items, "limits": asdict(limits)}):
                for _ in items:
                    got = child.read(time.monotonic() + self.time_s)
                    if got is None or got.get("refused") == "MemoryError":
                        break
                    answers.append(_answer(got))
        finally:
            broken = len(answers) < len(items)
            code = child.kill() if broken else None
            self._give_back(child, broken)
        if not started:
            raise ServiceUnavailable(f"the circuit parser did not start (exit code {code})")
        if broken:
            answers.append(self._failure(got, code, child.timed_out))
        return answers, broken

    def _take(self) -> _Child:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            self._grow()
            return self._idle.get()

    def _failure(self, got: JsonObject | None, code: int | None, timed_out: bool) -> CircuitError:
        mib = self.memory_bytes // 2**20
        if got is None and timed_out:
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


def _answer(got: JsonObject) -> Any:
    """The child's answer: its CircuitInfo, or its refusal (returned, not raised); checked,
    not trusted."""
    if "refused" in got:
        cls = _REFUSALS.get(str(got["refused"]), CircuitError)
        detail = got.get("detail")
        detail = detail if isinstance(detail, dict) else {}
        try:
            return _refusal(cls, str(got.get("message", "")), **detail)
        except TypeError:
            return CircuitError(str(got.get("message", "")))
    info = got.get("info")
    if not isinstance(info, dict) or info.keys() != _INFO_TYPES.keys():
        return CircuitError("the circuit parser answered out of protocol")
    return _info(info) or CircuitError("the circuit parser answered out of protocol")


def _refusal(cls: type[InvalidInput], message: str, **detail: Any) -> InvalidInput:
    """``cls(message, **detail)``: the child's detail as keyword arguments, as it sent
    them (one the class does not take raises TypeError)."""
    return cls(message, **detail)


def _info(info: JsonObject) -> CircuitInfo | None:
    """The CircuitInfo of a child's facts (the keys of _INFO_TYPES); None when a fact has
    the wrong type."""
    from qtaskdist_jupyter.core.circuits.codec import CircuitInfo

    fmt, params, ops = info["format"], info["parameters"], info["operations"]
    counts = [info[k] for k in ("num_qubits", "num_clbits", "num_instructions")]
    ints = [n for n in counts if type(n) is int]
    if not isinstance(fmt, str) or len(ints) != len(counts):
        return None
    if not isinstance(params, list) or not isinstance(ops, list):
        return None
    names = [n for n in [*params, *ops] if isinstance(n, str)]
    if len(names) != len(params) + len(ops):
        return None
    nq, nc, ni = ints
    return CircuitInfo(fmt, nq, nc, ni, names[: len(params)], frozenset(names[len(params) :]))
