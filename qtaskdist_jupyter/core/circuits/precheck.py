"""The counting checks of :mod:`.codec`, without the parse: what the server runs itself
before it hands a circuit to a parse child (:mod:`.sandbox`).

They are cheap (a token scan of at most ``max_payload_bytes``, a ``struct`` walk of the
QPY headers), and every refusal they find (``h $100000000;``, a loop of 10^9 iterations,
a QPY body claiming 10^6 qubits) is answered in milliseconds, without waiting for a
child."""

from __future__ import annotations

from qtaskdist_jupyter.core.circuits import codec
from qtaskdist_jupyter.core.circuits.qasm_scan import scan
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import CircuitError, PayloadTooLarge


def precheck(source: str, fmt: str, limits: Limits) -> str:
    """Refuse what the counts alone refuse; return the resolved format."""
    size = len(source.encode())
    if size > limits.max_payload_bytes:
        top = limits.max_payload_bytes
        msg = f"circuit is {size} bytes; the limit is {top}"
        raise PayloadTooLarge(msg, limit="payload_bytes", value=size, maximum=top)
    if fmt not in ("auto", "qasm2", "qasm3", "qpy"):
        raise CircuitError(f"unknown circuit format {fmt!r}; use auto, qasm2, qasm3 or qpy")
    fmt = codec.detect_format(source) if fmt == "auto" else fmt
    if fmt == "qpy":
        codec._qpy_bytes(source, limits)  # the same check, without the load
        return fmt
    found = scan(source, fmt)
    codec._limit("qubits", found.qubits, limits.max_qubits)
    codec._limit("clbits", found.clbits, limits.max_instructions)
    codec._limit("instructions", found.instructions, limits.max_instructions)
    return fmt
