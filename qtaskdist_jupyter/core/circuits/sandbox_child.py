"""The child side of :mod:`.sandbox`: parse circuits under an address-space limit.

Run as ``python -m qtaskdist_jupyter.core.circuits.sandbox_child MEMORY_BYTES``. It imports
qiskit, parses one small program (so that its first real request is warm), then limits
its own address space to what it uses now plus ``MEMORY_BYTES`` and answers requests
on stdin/stdout: 4-byte big-endian length, then JSON, both ways. Nothing is pickled:
a request is a list of (circuit text, format) and the limits; the child answers one
frame per circuit, in order: the circuit's plain facts, or the refusal's class name,
message and detail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import struct
import sys
from typing import Any, BinaryIO, TypedDict

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.jsontypes import JsonObject


class ParseRequest(TypedDict):
    """A request: (circuit text, format) pairs, and the limits' fields to parse under."""

    sources: list[tuple[str, str]]
    limits: dict[str, float]


class Refusal(TypedDict):
    """The answer for a circuit refused: the error's class name, message and detail."""

    refused: str
    message: str
    detail: JsonObject


class Parsed(TypedDict):
    """The answer for a circuit parsed: its CircuitInfo's fields (operations as a list)."""

    info: JsonObject


def _limit_address_space(extra_bytes: int) -> None:
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # not Linux: no /proc, and RLIMIT_AS is not enforced everywhere
    resource.setrlimit(resource.RLIMIT_AS, (used + extra_bytes, used + extra_bytes))


def read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack("!I", head)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: BinaryIO, obj: Any) -> None:
    body = json.dumps(obj).encode()
    stream.write(struct.pack("!I", len(body)) + body)
    stream.flush()


def answer(source: Any, fmt: Any, limits: Limits) -> Refusal | Parsed:
    from qtaskdist_jupyter.core.circuits import codec

    try:
        info = codec.inspect_circuit(source, fmt, limits=limits)
    except InvalidInput as exc:
        return {"refused": type(exc).__name__, "message": exc.message, "detail": exc.detail}
    except MemoryError:
        return {"refused": "MemoryError", "message": "", "detail": {}}
    facts = dataclasses.asdict(info)
    facts["operations"] = sorted(info.operations)  # JSON has no sets
    return {"info": facts}


def serve(request: ParseRequest, stdout: BinaryIO) -> None:
    """One frame per circuit of the request, in order, each as soon as it is parsed."""
    limits = dataclasses.replace(Limits(), **request["limits"])
    for source, fmt in request["sources"]:
        write_frame(stdout, answer(source, fmt, limits))


def main(argv: list[str]) -> int:
    # The protocol gets the real stdout; anything a library prints goes to stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from qtaskdist_jupyter.core.circuits import codec

    codec.warm_up()
    _limit_address_space(int(argv[0]))
    stdin = sys.stdin.buffer
    write_frame(stdout, {"ready": os.getpid()})
    while (frame := read_frame(stdin)) is not None:
        serve(json.loads(frame), stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
