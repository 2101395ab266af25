"""Read OpenQASM 2, OpenQASM 3 and base64 QPY into a ``QuantumCircuit``, safely.

Used by the server (validation at submit time, no Aer there) and by the worker. Nothing
here unpickles, evals or execs: QPY is a struct format (qiskit's reader has no pickle
path; symbolic expressions go through an AST walker with an allow-list), and QASM goes to
qiskit's parsers only after :func:`.qasm_scan.scan` has refused every ``include`` but the
built-in one and counted instructions and qubits, which are checked against the limits
here, so an exponential gate tower or a ``qreg q[10^9]`` never reaches a parser that would
allocate it.

QPY gets the equivalent check on its binary header before qiskit reads it (a 400-byte
file claiming 3*10^8 qubits makes ``qpy.load`` allocate for minutes).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal

from qiskit import qasm2, qasm3, qpy
from qiskit.circuit import QuantumCircuit

from qtaskdist_jupyter.core.circuits import qasm2_bound, qasm3_fast
from qtaskdist_jupyter.core.circuits.bounds import nested_count
from qtaskdist_jupyter.core.circuits.errtext import one_line
from qtaskdist_jupyter.core.circuits.qasm_scan import scan, tokenize
from qtaskdist_jupyter.core.circuits.qpy_walk import check_headers
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import CircuitError, LimitExceeded, PayloadTooLarge

CircuitFormat = Literal["auto", "qasm2", "qasm3", "qpy"]
QPY_PREFIX = "UUlTS0lU"  # base64 of b"QISKIT"
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class CircuitInfo:
    format: str
    num_qubits: int
    num_clbits: int
    num_instructions: int
    parameters: list[str]
    # Every operation's name, control-flow bodies included (core/budget.py reads it).
    operations: frozenset[str] = frozenset()


# ---------------------------------------------------------------- error cleaning
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_POSITIONS = (
    re.compile(r"^\s*(?:<input>|[^\s:]*):(\d+),(\d+):\s*"),  # qiskit.qasm2
    re.compile(r"^\s*L(\d+):C(\d+):\s*"),  # openqasm3
    re.compile(r"^\s*(\d+),(\d+):\s*"),  # qiskit_qasm3_import
)


def _clean_error(exc: BaseException, what: str) -> CircuitError:
    line = column = None
    raw = getattr(exc, "message", None)  # QiskitError's str() is repr(message)
    msg = _ANSI.sub("", raw if isinstance(raw, str) else str(exc))
    for marker in ("\nstack backtrace", "\nnote: run with", "\nTraceback"):
        msg = msg.split(marker, 1)[0]
    cause: BaseException | None = exc
    while cause is not None and line is None:  # ANTLR keeps the position on the cause
        tok = getattr(cause, "offendingToken", None)
        if tok is not None and getattr(tok, "line", None):
            line, column = tok.line, tok.column + 1
            text = getattr(tok, "text", "") or ""
            near = "end of input" if text == "<EOF>" else repr(text)
            msg = msg or f"syntax error near {near}"
        nxt = cause.__cause__ or cause.__context__
        if nxt is None and cause.args and isinstance(cause.args[0], BaseException):
            nxt = cause.args[0]
        cause = nxt
    msg = one_line(msg)
    for pattern in _POSITIONS:
        m = pattern.match(msg)
        if m:
            line, column, msg = int(m.group(1)), int(m.group(2)) + 1, msg[m.end() :]
            break
    msg = msg or type(exc).__name__
    if len(msg) > _MAX_MESSAGE:
        msg = msg[: _MAX_MESSAGE - 3] + "..."
    return CircuitError(f"{what}: {msg}", line=line, column=column)


def missing_semicolon_at(source: str, line: int, column: int) -> tuple[int, int]:
    """Where a ';' (or another token qiskit's OpenQASM 2 parser "needed") is missing: the
    parser reports the token after the gap, which for a statement whose line lacks its end
    is the first token of the next line (column 1). The place to type it is the end of the
    previous line of code: its (line, column)."""
    lines = source.splitlines()
    if column != 1 or not 1 < line <= len(lines) + 1:
        return line, column
    for back in range(line - 1, 0, -1):
        code = lines[back - 1].split("//", 1)[0].rstrip()
        if code:
            return back, len(code) + 1
    return line, column


def _call_parser(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # pyo3 PanicException derives from BaseException
        err = _clean_error(exc, what)
        if "needed '" in err.message and err.line and err.column and args:
            if isinstance(args[0], str):
                line, column = missing_semicolon_at(args[0], err.line, err.column)
                err = CircuitError(err.message, line=line, column=column)
        raise err from exc


# ---------------------------------------------------------------- QPY
def _qpy_bytes(source: str, limits: Limits) -> bytes:
    try:
        raw = base64.b64decode("".join(source.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CircuitError("QPY payload is not valid base64") from exc
    if not raw.startswith(b"QISKIT") or len(raw) < 20:
        raise CircuitError("QPY payload does not start with the QPY header 'QISKIT'")
    version, num_programs = raw[6], struct.unpack_from("!Q", raw, 10)[0]
    # Versions >= 13 (qiskit >= 1.3) have the layout checked below; older ones go through
    # qiskit's legacy reader, which we don't guard, so they are refused.
    if version < 13:
        raise CircuitError(f"QPY version {version} is too old; re-export with qiskit >= 1.3")
    if num_programs != 1:
        raise CircuitError(f"QPY payload must hold exactly one circuit, not {num_programs}")
    try:
        if raw[19:20] != b"q":
            raise CircuitError("QPY payload does not hold a circuit")
        off = 20
        if version >= 16:  # a table of circuit offsets; anything but "right after" is odd
            off = struct.unpack_from("!Q", raw, 20)[0]
            if off != 28:
                raise CircuitError("QPY circuit offset table is malformed")
        # name_size, phase type, phase size, qubits, clbits, metadata, registers, instrs, vars
        head = struct.unpack_from("!H1cHIIQIQI", raw, off)
    except struct.error as exc:
        raise CircuitError("QPY payload is truncated") from exc
    _, _, _, qubits, clbits, meta, nregs, ninstr, nvars = head
    _limit("qubits", qubits, limits.max_qubits)
    _limit("clbits", clbits, limits.max_instructions)
    _limit("instructions", ninstr, limits.max_instructions)
    if max(meta, nregs, nvars) > len(raw):
        raise CircuitError("QPY header claims more data than the payload holds")
    check_headers(raw, version, off, limits)  # every nested circuit's header too
    return raw


# ---------------------------------------------------------------- public API
def _limit(name: str, value: int, maximum: int) -> None:
    if value > maximum:
        msg = f"circuit has {value} {name}; the limit is {maximum}"
        raise LimitExceeded(msg, limit=name, value=value, maximum=maximum, field="circuit")


def _first_tokens(text: str) -> list[Any]:
    try:
        return tokenize(text)[:3]
    except CircuitError:
        return []


def detect_format(source: str) -> str:
    """``qpy`` (base64 of b"QISKIT"), the ``OPENQASM`` header's version, else a guess."""
    text = source.lstrip("\ufeff \t\r\n")
    if text.startswith(QPY_PREFIX):
        return "qpy"
    # The header comes first: a short prefix is enough (each token costs microseconds),
    # once it holds a third token, which means the first two are whole. The first try
    # ends at the first ";" (the header's, unless a comment comes first).
    for size in (text.find(";", 0, 4096) + 1, 256, 4096):
        toks = _first_tokens(text[:size])
        if len(toks) == 3:
            break
    if len(toks) >= 2 and toks[0].text == "OPENQASM":
        return "qasm3" if toks[1].text.startswith("3") else "qasm2"
    return "qasm2" if re.search(r"\bqreg\b", text) else "qasm3"


def _counted(source: str, fmt: str, limits: Limits, quick: bool) -> int | None:
    """The program's instructions (user gates expanded, loops unrolled), its limits
    checked before any parser sees it. ``quick``: an OpenQASM 2 program whose cheap upper
    bound (:mod:`.qasm2_bound`) is within the limits skips the token scan; None is then
    returned, and the parsed circuit's length is the count (with no gate definitions, one
    instruction per broadcast qubit, as the scan counts). Over the limits, or where the
    bound cannot tell, the scan runs, and its refusals name a line."""
    if quick and fmt == "qasm2":
        b = qasm2_bound.bound(source)
        if b is not None and b.qubits <= limits.max_qubits and max(b) <= limits.max_instructions:
            return None
    found = scan(source, fmt)
    if found.statements == 0:
        raise CircuitError(_EMPTY)
    _limit("qubits", found.qubits, limits.max_qubits)
    _limit("clbits", found.clbits, limits.max_instructions)
    _limit("instructions", found.instructions, limits.max_instructions)
    return found.instructions


_EMPTY = "the program is empty: it declares no registers or operations"


def _load(
    source: str, fmt: str, limits: Limits, quick: bool = False
) -> tuple[QuantumCircuit, str, int]:
    size = len(source.encode())
    if size > limits.max_payload_bytes:
        top = limits.max_payload_bytes
        msg = f"circuit is {size} bytes; the limit is {top}"
        raise PayloadTooLarge(msg, limit="payload_bytes", value=size, maximum=top, field="circuit")
    if fmt not in ("auto", "qasm2", "qasm3", "qpy"):
        raise CircuitError(f"unknown circuit format {fmt!r}; use auto, qasm2, qasm3 or qpy")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "qpy":
        raw = _qpy_bytes(source, limits)
        programs = _call_parser("invalid QPY", qpy.load, io.BytesIO(raw))
        if len(programs) != 1 or not isinstance(programs[0], QuantumCircuit):
            raise CircuitError("QPY payload must hold exactly one QuantumCircuit")
        circuit = programs[0]
        count = nested_count(circuit, limits)
    else:
        counted = _counted(source, fmt, limits, quick)
        if fmt == "qasm2":
            circuit = _call_parser(
                "invalid OpenQASM 2",
                qasm2.loads,
                source,
                include_path=(),  # defence in depth: nothing to find even if asked
                custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
            )
        else:
            circuit = _call_parser("invalid OpenQASM 3", _qasm3_circuit, source)
        if counted is None and not (circuit.num_qubits or circuit.num_clbits or circuit.data):
            raise CircuitError(_EMPTY)
        count = len(circuit.data) if counted is None else counted
    _limit("qubits", circuit.num_qubits, limits.max_qubits)
    return circuit, fmt, count


def _qasm3_circuit(source: str) -> QuantumCircuit:
    """The program as ``qasm3.loads`` reads it: qiskit's Rust parser where it takes the
    program (:func:`.qasm3_fast.loads`, some 20x faster), else the ANTLR path, whose
    refusal (with its line and column) is the one the user sees."""
    circuit = qasm3_fast.loads(source)
    if circuit is not None:
        return circuit
    import qiskit_qasm3_import

    try:
        return qiskit_qasm3_import.convert(qasm3_tree(source))
    except qiskit_qasm3_import.ConversionError as exc:
        raise qasm3.QASM3ImporterError(str(exc)) from exc


# The last OpenQASM 3 program parsed by ANTLR and its tree: a program the Rust parser
# refuses is parsed once for qiskit's importer and read again by the worker's QIR profile
# walker. The tree is only read, never changed.
_last_tree: tuple[str, Any] | None = None


def qasm3_tree(source: str) -> Any:
    """``openqasm3.parse(source)``; the same program twice in a row is parsed once."""
    global _last_tree
    last = _last_tree  # one read: another thread may swap it meanwhile
    if last is not None and last[0] == source:
        return last[1]
    import openqasm3

    tree = openqasm3.parse(source)
    _last_tree = (source, tree)
    return tree


def load_circuit(
    source: str, fmt: CircuitFormat = "auto", *, limits: Limits, quick: bool = False
) -> QuantumCircuit:
    """Parse ``source`` (QASM 2/3 text or base64 QPY); CircuitError / LimitExceeded on refusal.
    ``quick``: see :func:`_counted` (a worker's job process, bounded in memory and time)."""
    return _load(source, fmt, limits, quick)[0]


def inspect_circuit(source: str, fmt: CircuitFormat = "auto", *, limits: Limits) -> CircuitInfo:
    """The facts the submit-time check needs. A plain OpenQASM 2 program within the
    limits by its cheap bound skips the exact token scan (:func:`_counted`): a scan's
    refusal could only be a limit, which the bound already rules out."""
    circuit, resolved, count = _load(source, fmt, limits, quick=True)
    return CircuitInfo(
        format=resolved,
        num_qubits=circuit.num_qubits,
        num_clbits=circuit.num_clbits,
        num_instructions=count,
        parameters=sorted(p.name for p in circuit.parameters),
        operations=operation_names(circuit),
    )


def operation_names(circuit: QuantumCircuit) -> frozenset[str]:
    """Every operation's name in ``circuit``, control-flow bodies included. Names are read
    from the Rust side (``inst.name``): only a control-flow op is built as a Python object."""
    names: set[str] = set()
    stack = [circuit]
    while stack:
        for inst in stack.pop().data:
            names.add(inst.name)
            if inst.is_control_flow():
                stack.extend(inst.operation.blocks)
    return frozenset(names)


_WARM_UP_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[2] q;
bit[2] c;
rx(theta) q[0];
cx q[0], q[1];
c = measure q;
"""


def warm_up() -> None:
    """Parse one small OpenQASM 3 program now.

    The first QASM 3 parse of a process loads the ANTLR-based parser, a cold cost many
    times a warm parse; a server calls this at start-up so that the cost does not land on
    the first user's submit (a task's time counts from its POST).
    """
    inspect_circuit(_WARM_UP_QASM3, "qasm3", limits=Limits())


def encode_circuit(circuit: QuantumCircuit) -> tuple[str, str]:
    """Base64 QPY of ``circuit`` (exact, parameters included) and the format name."""
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii"), "qpy"


def to_qasm3(circuit: QuantumCircuit) -> str:
    try:
        return qasm3.dumps(circuit)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:
        raise _clean_error(exc, "cannot export to OpenQASM 3") from exc
