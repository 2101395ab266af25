"""Every circuit header in a QPY payload, read with ``struct`` before qiskit loads it.

A QPY circuit holds further circuits: each control-flow body (an instruction parameter
of type ``q``, possibly inside a tuple ``t``) and each custom instruction's definition
(the custom-definitions table) is a full circuit payload with its own header, and each
header's qubit and clbit counts are allocated by the reader as they stand. This walk
visits every header (QPY versions 13-18, the layout in qiskit's ``qiskit/qpy`` docs) and
refuses, before anything is allocated for it:

* a header with more qubits than ``max_qubits``, more clbits or instructions than
  ``max_instructions``, or a register larger than those;
* more instructions claimed over all headers than ``max_instructions``, or more qubits and
  clbits over all headers than twice ``max_instructions``;
* any count that claims more entries than the bytes left could hold, and nesting
  deeper than :data:`MAX_DEPTH`.

Every value (a parameter, an expression, a condition) is skipped by its length prefix,
except the two kinds that may hold circuits: ``q`` (a circuit) and ``t`` (a tuple).
"""

from __future__ import annotations

import struct

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import CircuitError, LimitExceeded

MAX_DEPTH = 64
_NESTED = "a nested circuit (control-flow body or definition)"
_HEADER = struct.Struct("!H1cHIIQIQI")
_INSTRUCTION = struct.Struct("!HHHIIBHqII")
_CUSTOM_DEF = struct.Struct("!H1cII?QIIQ")


class _Malformed(Exception):
    pass


class _Cursor:
    """Reads ``data[pos:end]``; every read is checked against ``end``."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def skip(self, n: int) -> int:
        if n < 0 or self.pos + n > self.end:
            raise _Malformed(f"a field of {n} bytes runs past its end at byte {self.pos}")
        start, self.pos = self.pos, self.pos + n
        return start

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack_from(self.data, self.skip(fmt.size))

    def byte(self) -> bytes:
        return self.data[self.skip(1) : self.pos]

    def claim(self, count: int, each: int, what: str) -> int:
        """``count`` entries of at least ``each`` bytes must fit in what is left."""
        if count * each > self.end - self.pos:
            raise _Malformed(f"{count} {what} claimed with {self.end - self.pos} bytes left")
        return count


class _Walk:
    def __init__(self, data: bytes, version: int, limits: Limits) -> None:
        self.data, self.version, self.limits = data, version, limits
        self.instructions = self.bits = self.headers = 0

    def _limit(self, what: str, value: int, maximum: int, where: str) -> None:
        if value > maximum:
            msg = f"{where} has {value} {what}; the limit is {maximum}"
            raise LimitExceeded(msg, limit=what, value=value, maximum=maximum, field="circuit")

    def circuit(self, pos: int, end: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Malformed(f"circuits nested deeper than {MAX_DEPTH}")
        where = (
            "the circuit" if depth == 0 else "a nested circuit (control-flow body or definition)"
        )
        c = _Cursor(self.data, pos, end)
        name, _, phase, qubits, clbits, meta, nregs, ninstr, nvars = c.unpack(_HEADER)
        lim = self.limits
        self._limit("qubits", qubits, lim.max_qubits, where)
        self._limit("clbits", clbits, lim.max_instructions, where)
        self._limit("instructions", ninstr, lim.max_instructions, where)
        self.headers += 1
        self.instructions += ninstr
        self.bits += qubits + clbits
        self._limit("instructions", self.instructions, lim.max_instructions, "the circuit in all")
        self._limit("bits", self.bits, 2 * lim.max_instructions, "the circuit in all")
        c.skip(name + phase + meta)
        self._registers(c, c.claim(nregs, 9, "registers"))
        self._vars(c, c.claim(nvars, 20, "variables"))
        if self.version >= 15:  # annotation states: namespace and state, both sized
            for _ in range(c.claim(c.unpack(_U32)[0], 12, "annotation namespaces")):
                ns, state = c.unpack(_U32_U64)
                c.skip(ns + state)
        if self.version >= 18:  # parameter vector table
            for _ in range(c.claim(c.unpack(_U16)[0], 26, "parameter vectors")):
                c.skip(c.unpack(_VECTOR)[0])
        self._custom_defs(c, depth)
        for _ in range(c.claim(ninstr, _INSTRUCTION.size, "instructions")):
            self._instruction(c, depth)

    def _registers(self, c: _Cursor, n: int) -> None:
        for _ in range(n):
            if self.version >= 18:
                kind, _, size, name, _, attached = c.unpack(_REGISTER_V18)
                c.skip(name)
                c.skip(4 * (1 if attached == b"\x01" else size))
            else:
                kind, _, size, name, _ = c.unpack(_REGISTER_V4)
                c.skip(name)
                c.skip(8 * size)
            top = self.limits.max_qubits if kind != b"c" else self.limits.max_instructions
            self._limit("bits", size, top, "a register")

    def _vars(self, c: _Cursor, n: int) -> None:
        for _ in range(n):
            _, _, name = c.unpack(_VAR_DECL)
            self._expr_type(c)
            c.skip(name)

    def _expr_type(self, c: _Cursor) -> None:
        if c.byte() == b"u":
            c.skip(4)

    def _custom_defs(self, c: _Cursor, depth: int) -> None:
        for _ in range(c.claim(c.unpack(_U64)[0], _CUSTOM_DEF.size, "custom instructions")):
            name, kind, qubits, clbits, has_def, size, _, _, base = c.unpack(_CUSTOM_DEF)
            where = "a custom instruction"
            self._limit("qubits", qubits, self.limits.max_qubits, where)
            self._limit("clbits", clbits, self.limits.max_instructions, where)
            name_at = c.skip(name)
            evolution = self.data[name_at : name_at + 22] == b"###PauliEvolutionGate_"
            if has_def:
                at = c.skip(size)
                if kind != b"p" and not evolution:
                    self.circuit(at, at + size, depth + 1)
            if base:  # a controlled gate's base gate: one instruction
                at = c.skip(base)
                self._instruction(_Cursor(self.data, at, at + base), depth, args=False)

    def _instruction(self, c: _Cursor, depth: int, *, args: bool = True) -> None:
        """One instruction; a base gate (``args`` False) is stored without its qargs."""
        name, label, nparams, nq, nc, extras, cond, _, _, _ = c.unpack(_INSTRUCTION)
        c.skip(name + label + cond)
        if extras & 0b11 == 2:  # a classical expression condition: a sized value
            c.skip(c.unpack(_PARAM)[1])
        if args:
            c.skip(5 * c.claim(nq + nc, 5, "instruction arguments"))
        for _ in range(c.claim(nparams, 9, "instruction parameters")):
            self._param(c, depth)
        if self.version >= 15 and extras & 0b1000_0000:
            for _ in range(c.claim(c.unpack(_U32)[0], 12, "annotations")):
                c.skip(c.unpack(_U32_U64)[1])

    def _param(self, c: _Cursor, depth: int) -> None:
        kind, size = c.unpack(_PARAM)
        at = c.skip(size)
        if kind == b"q":
            self.circuit(at, at + size, depth + 1)
        elif kind == b"t":
            inner = _Cursor(self.data, at, at + size)
            for _ in range(inner.claim(inner.unpack(_U64)[0], 9, "tuple items")):
                self._param(inner, depth)


_U8, _U16, _U32, _U64 = (struct.Struct(f"!{f}") for f in "BHIQ")
_U32_U64 = struct.Struct("!IQ")
_VECTOR = struct.Struct("!HQ16s")
_REGISTER_V4 = struct.Struct("!1c?IH?")
_REGISTER_V18 = struct.Struct("!1c?IH?c")
_VAR_DECL = struct.Struct("!16scH")
_PARAM = struct.Struct("!1cQ")


def check_headers(raw: bytes, version: int, offset: int, limits: Limits) -> None:
    """Walk every circuit header of the QPY payload ``raw`` whose circuit starts at
    ``offset``; LimitExceeded / CircuitError on refusal."""
    try:
        _Walk(raw, version, limits).circuit(offset, len(raw), 0)
    except (_Malformed, struct.error) as exc:
        raise CircuitError(f"QPY payload is malformed: {exc}") from exc
