"""What the server checks itself before it hands a circuit to a parse child (:mod:`.sandbox`).

Only what is cheap and bounded by the payload's size: the size itself, and for QPY the
``struct`` walk of every circuit header (:mod:`.qpy_walk`; a QPY body claiming 10^6
qubits is refused here, in microseconds). OpenQASM text is scanned and counted in the
child, which answers a refusal (``h $100000000;``, a loop of 10^9 iterations) in
milliseconds: a megabyte of tokens is seconds of CPU that the server's event loop does
not spend.
"""

from __future__ import annotations

from qtaskdist_jupyter.core.circuits import codec
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import PayloadTooLarge


def precheck(source: str, fmt: str, limits: Limits) -> None:
    """PayloadTooLarge / CircuitError / LimitExceeded for what needs no parse to refuse."""
    size = len(source.encode())
    if size > limits.max_payload_bytes:
        top = limits.max_payload_bytes
        msg = f"circuit is {size} bytes; the limit is {top}"
        raise PayloadTooLarge(msg, limit="payload_bytes", value=size, maximum=top, field="circuit")
    qpy = source.lstrip("\ufeff \t\r\n").startswith(codec.QPY_PREFIX)
    if fmt == "qpy" or (fmt == "auto" and qpy):
        codec._qpy_bytes(source, limits)  # the codec's own check, without the load
