"""Read OpenQASM 2, OpenQASM 3 and base64 QPY into a ``QuantumCircuit``, safely.

Used by the server (validation at submit time, no Aer there) and by the worker. Nothing
here unpickles, evals or execs: QPY is a struct format (qiskit's reader has no pickle
path; symbolic expressions go through an AST walker with an allow-list), and QASM goes to
qiskit's parsers only after our own token scan has

* refused every ``include`` except the built-in ``qelib1.inc`` / ``stdgates.inc`` (qiskit's
  QASM 2 reader would open any path and quote the file in its error message);
* counted the instructions with user gate definitions expanded (memoized per definition,
  never actually expanded), and the declared qubits, so an exponential gate tower or a
  ``qreg q[10^9]`` never reaches a parser that would allocate it.

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
from typing import Any, Literal, NamedTuple

from qiskit.circuit import Gate, Instruction, QuantumCircuit

from .config import Limits
from .errors import CircuitError, IncludeRefused, LimitExceeded, PayloadTooLarge

CircuitFormat = Literal["auto", "qasm2", "qasm3", "qpy"]
QPY_PREFIX = "UUlTS0lU"  # base64 of b"QISKIT"
_ALLOWED_INCLUDES = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
_MAX_NESTING = 200  # brackets; deeper input only serves to exhaust a recursive parser
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class CircuitInfo:
    format: str
    num_qubits: int
    num_clbits: int
    num_instructions: int
    parameters: list[str]


# ---------------------------------------------------------------- token scan
class _Tok(NamedTuple):
    kind: str  # "id" | "num" | "str" | "op"
    text: str
    line: int
    col: int


# Line comments end at *any* line break a lexer might honour, so text we treat as code is
# never less than what a parser treats as code (the safe direction for the include check).
# Whitespace and comments are folded (atomically: no backtracking into a comment) into
# each match, which halves the number of matches.
_TOKEN_RE = re.compile(
    r"""(?>(?:[ \t\n\r\f\v\x85\u2028\u2029]+|//[^\n\r\f\v\x85\u2028\u2029]*|/\*.*?\*/)*)
      (?: (?P<end>\Z)
        | (?P<badbc>/\*)
        | (?P<str>"[^"\n\r\\]*"|'[^'\n\r\\]*')
        | (?P<badstr>["'])
        | (?P<id>[^\W\d]\w*)
        | (?P<num>(?:\d[\w.]*|\.\d[\w.]*)(?:(?<=[eE])[+-]\d+)?)
        | (?P<op>->|==|!=|<=|>=|&&|\|\||\+\+|<<|>>|\$\d+|\S))""",
    re.VERBOSE | re.DOTALL,
)


def _tokens(source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line, line_start, prev, depth = 1, 0, 0, 0
    for m in _TOKEN_RE.finditer(source):
        kind = m.lastgroup or "op"
        start = m.start(kind)
        text = m.group(kind)
        nl = source.rfind("\n", prev, start)
        if nl >= 0:
            line += source.count("\n", prev, start)
            line_start = nl + 1
        prev, col = start, start - line_start + 1
        if kind == "end":
            break
        if kind == "badbc":
            raise CircuitError("unterminated block comment", line=line, column=col)
        if kind == "badstr":
            msg = "unterminated string, or one with an escape or line break"
            raise CircuitError(msg, line=line, column=col)
        if kind == "op" and text in "([{)]}":
            depth += 1 if text in "([{" else -1
            if depth > _MAX_NESTING:
                msg = f"brackets nested deeper than {_MAX_NESTING}"
                raise CircuitError(msg, line=line, column=col)
        toks.append(_Tok(kind, text, line, col))
    return toks


def _check_includes(toks: list[_Tok], fmt: str) -> None:
    allowed = _ALLOWED_INCLUDES[fmt]
    for i, t in enumerate(toks):
        if t.kind != "id" or t.text != "include":
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        end = toks[i + 2] if i + 2 < len(toks) else None
        if nxt is None or nxt.kind != "str" or end is None or end.text != ";":
            raise IncludeRefused("malformed include statement", line=t.line, column=t.col)
        if nxt.text[1:-1] != allowed:
            msg = f"include {nxt.text} refused: only {allowed!r} may be included in {fmt}"
            raise IncludeRefused(msg, line=t.line, column=t.col)


# ---------------------------------------------------------------- instruction count
_NO_OP = {
    "OPENQASM", "include", "qreg", "creg", "qubit", "bit", "int", "uint", "float", "angle",
    "bool", "duration", "stretch", "complex", "const", "input", "output", "let", "array",
    "extern", "opaque", "defcalgrammar", "break", "continue", "return", "end",
}  # fmt: skip


def _group_end(s: list[_Tok], k: int) -> int:
    """Index after the bracket group opening at ``k`` (or after the single token there)."""
    if k >= len(s) or s[k].text not in ("(", "[", "{"):
        return k + 1
    depth = 0
    while k < len(s):
        depth += s[k].text in ("(", "[", "{")
        depth -= s[k].text in (")", "]", "}")
        k += 1
        if depth == 0:
            break
    return k


class _Count:
    """Walks the token list once: instructions (user gates expanded), declared bits."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.gates: dict[str, int] = {}  # gate name -> expanded size of its body
        self.regs: dict[str, int] = {}
        self.consts: dict[str, int] = {}
        self.qubits = self.clbits = self.statements = 0

    def walk(self, i: int, top: bool) -> tuple[int, int]:
        total, stmt = 0, []
        toks = self.toks
        while i < len(toks):
            t = toks[i]
            if not stmt and (t.text in ("pragma", "@") or (t.text == "#" and i + 1 < len(toks))):
                while i + 1 < len(toks) and toks[i + 1].line == t.line:  # runs to line end
                    i += 1
                i += 1
            elif t.text == ";":
                total += self._stmt(stmt, top)
                stmt, i = [], i + 1
            elif t.text == "{" and stmt and stmt[0].text == "for" and stmt[-1].text == "in":
                j = _group_end(toks, i)  # a set literal `{1, 2}`, not a block
                stmt.extend(toks[i:j])
                i = j
            elif t.text == "{":
                head, stmt = stmt, []
                if head and head[0].text in ("cal", "defcal"):
                    i = _group_end(toks, i)
                elif head and head[0].text in ("gate", "def") and len(head) > 1:
                    body, i = self.walk(i + 1, False)
                    self.gates[head[1].text] = body
                else:  # control flow or bare scope: its instructions, not the wrapper
                    body, i = self.walk(i + 1, top)
                    total += body
                    self.statements += 1
            elif t.text == "}":
                return total + self._stmt(stmt, top), i + 1
            else:
                stmt.append(t)
                i += 1
        return total + self._stmt(stmt, top), i

    def _size(self, tok: _Tok) -> int:
        if tok.kind == "num" and tok.text.isdigit():
            return int(tok.text)
        if tok.text in self.consts:
            return self.consts[tok.text]
        msg = "register sizes must be integer literals or integer constants"
        raise CircuitError(msg, line=tok.line, column=tok.col)

    def _declare(self, s: list[_Tok], top: bool) -> None:
        texts = [t.text for t in s]
        kind = texts[0]
        if kind == "const" and len(s) >= 5 and texts[3] == "=" and s[4].text.isdigit():
            self.consts[texts[2]] = int(s[4].text)
            return
        if kind in ("qreg", "creg") and len(s) >= 5 and texts[2] == "[":
            name, size = texts[1], self._size(s[3])
        elif kind in ("qubit", "bit") and len(s) >= 5 and texts[1] == "[":
            name, size = texts[4], self._size(s[2])
        elif kind in ("qubit", "bit") and len(s) >= 2:
            name, size = texts[1], 1
        else:
            return
        if not top:
            return
        self.regs[name] = size
        if kind in ("qreg", "qubit"):
            self.qubits += size
        else:
            self.clbits += size

    def _stmt(self, s: list[_Tok], top: bool) -> int:
        while s and s[0].text in ("if", "while", "else", "for"):
            if s[0].text == "else":
                s = s[1:]
            elif s[0].text == "for":
                k = next((k for k, t in enumerate(s) if t.text == "in"), len(s) - 1) + 1
                s = s[_group_end(s, k) :]
            else:
                s = s[_group_end(s, 1) :]
        if not s:
            return 0
        self.statements += s[0].text not in ("OPENQASM", "include")
        if s[0].text in _NO_OP:
            self._declare(s, top)
            if "measure" not in (t.text for t in s):
                return 0
        i = 0
        while i + 1 < len(s) and s[i].kind == "id":  # gate modifiers: ctrl @, pow(2) @ ...
            j = _group_end(s, i + 1) if s[i + 1].text == "(" else i + 1
            if j < len(s) and s[j].text == "@":
                i = j + 1
            else:
                break
        name = s[i].text
        if name == "barrier":
            return 1
        unit = self.gates.get(name, 1)
        mult = 1
        if top:  # QASM broadcasting: `h q;` on a 5-qubit register is five instructions
            piece: list[str] = []
            for t in [*s[i + 1 :], _Tok("op", ",", 0, 0)]:
                if t.text in (",", "->", "="):
                    if len(piece) == 1 and piece[0] in self.regs:
                        mult = max(mult, self.regs[piece[0]])
                    piece = []
                elif t.text != "measure":
                    piece.append(t.text)
        return unit * mult


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
    msg = " ".join(msg.split())
    for pattern in _POSITIONS:
        m = pattern.match(msg)
        if m:
            line, column, msg = int(m.group(1)), int(m.group(2)) + 1, msg[m.end() :]
            break
    msg = msg or type(exc).__name__
    if len(msg) > _MAX_MESSAGE:
        msg = msg[: _MAX_MESSAGE - 3] + "..."
    return CircuitError(f"{what}: {msg}", line=line, column=column)


def _call_parser(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # pyo3 PanicException derives from BaseException
        raise _clean_error(exc, what) from exc


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
    return raw


def _expanded_count(circuit: QuantumCircuit, memo: dict[int, int], keep: list[Any]) -> int:
    total = 0
    for inst in circuit.data:
        op = inst.operation
        blocks = getattr(op, "blocks", None)
        if blocks:
            total += sum(_expanded_count(b, memo, keep) for b in blocks)
        elif type(op) in (Gate, Instruction) and op.definition is not None:
            # User-defined (QPY custom / to_gate()); memoized so shared definitions count once.
            d = op.definition
            if id(d) not in memo:
                keep.append(d)
                memo[id(d)] = _expanded_count(d, memo, keep)
            total += memo[id(d)]
        else:
            total += 1
    return total


# ---------------------------------------------------------------- public API
def _limit(name: str, value: int, maximum: int) -> None:
    if value > maximum:
        msg = f"circuit has {value} {name}; the limit is {maximum}"
        raise LimitExceeded(msg, limit=name, value=value, maximum=maximum)


def detect_format(source: str) -> str:
    """``qpy`` (base64 of b"QISKIT"), the ``OPENQASM`` header's version, else a guess."""
    text = source.lstrip("\ufeff \t\r\n")
    if text.startswith(QPY_PREFIX):
        return "qpy"
    try:  # the header comes first; scanning a prefix keeps a 1 MB program cheap
        toks = _tokens(text[:4096])[:2]
    except CircuitError:
        toks = []
    if len(toks) == 2 and toks[0].text == "OPENQASM":
        return "qasm3" if toks[1].text.startswith("3") else "qasm2"
    return "qasm2" if re.search(r"\bqreg\b", text) else "qasm3"


def _load(source: str, fmt: str, limits: Limits) -> tuple[QuantumCircuit, str, int]:
    size = len(source.encode())
    if size > limits.max_payload_bytes:
        top = limits.max_payload_bytes
        msg = f"circuit is {size} bytes; the limit is {top}"
        raise PayloadTooLarge(msg, limit="payload_bytes", value=size, maximum=top)
    if fmt not in ("auto", "qasm2", "qasm3", "qpy"):
        raise CircuitError(f"unknown circuit format {fmt!r}; use auto, qasm2, qasm3 or qpy")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "qpy":
        from qiskit import qpy

        raw = _qpy_bytes(source, limits)
        programs = _call_parser("invalid QPY", qpy.load, io.BytesIO(raw))
        if len(programs) != 1 or not isinstance(programs[0], QuantumCircuit):
            raise CircuitError("QPY payload must hold exactly one QuantumCircuit")
        circuit = programs[0]
        count = _expanded_count(circuit, {}, [])
    else:
        toks = _tokens(source)
        _check_includes(toks, fmt)
        counter = _Count(toks)
        count, _ = counter.walk(0, True)
        if counter.statements == 0:
            raise CircuitError("the program is empty: it declares no registers or operations")
        _limit("qubits", counter.qubits, limits.max_qubits)
        _limit("clbits", counter.clbits, limits.max_instructions)
        _limit("instructions", count, limits.max_instructions)
        if fmt == "qasm2":
            from qiskit import qasm2

            circuit = _call_parser(
                "invalid OpenQASM 2",
                qasm2.loads,
                source,
                include_path=(),  # defence in depth: nothing to find even if asked
                custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
            )
        else:
            from qiskit import qasm3

            circuit = _call_parser("invalid OpenQASM 3", qasm3.loads, source)
    _limit("qubits", circuit.num_qubits, limits.max_qubits)
    return circuit, fmt, count


def load_circuit(source: str, fmt: CircuitFormat = "auto", *, limits: Limits) -> QuantumCircuit:
    """Parse ``source`` (QASM 2/3 text or base64 QPY); CircuitError / LimitExceeded on refusal."""
    return _load(source, fmt, limits)[0]


def inspect_circuit(source: str, fmt: CircuitFormat = "auto", *, limits: Limits) -> CircuitInfo:
    circuit, resolved, count = _load(source, fmt, limits)
    return CircuitInfo(
        format=resolved,
        num_qubits=circuit.num_qubits,
        num_clbits=circuit.num_clbits,
        num_instructions=count,
        parameters=sorted(p.name for p in circuit.parameters),
    )


def encode_circuit(circuit: QuantumCircuit) -> tuple[str, str]:
    """Base64 QPY of ``circuit`` (exact, parameters included) and the format name."""
    from qiskit import qpy

    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii"), "qpy"


def to_qasm3(circuit: QuantumCircuit) -> str:
    from qiskit import qasm3

    try:
        return qasm3.dumps(circuit)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:
        raise _clean_error(exc, "cannot export to OpenQASM 3") from exc
