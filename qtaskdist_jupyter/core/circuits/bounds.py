"""Limits over every circuit nested in a loaded one (control-flow bodies, definitions).

A QPY payload holds one circuit header per control-flow body and per custom
instruction's definition, each claiming its own qubits and clbits; the top-level header
is checked before loading (:mod:`.codec`), and this walk checks all of them after
loading (in the parse sandbox, :mod:`.sandbox`), and counts instructions the way the
simulator will run them: definitions expanded, ``for`` loop bodies times their
iterations.
"""

from __future__ import annotations

from typing import Any

from qiskit.circuit import ForLoopOp, Gate, Instruction, QuantumCircuit

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import LimitExceeded


def _check(circuit: QuantumCircuit, where: str, limits: Limits) -> None:
    for name, value, top in (
        ("qubits", circuit.num_qubits, limits.max_qubits),
        ("clbits", circuit.num_clbits, limits.max_instructions),
    ):
        if value > top:
            msg = f"{where} has {value} {name}; the limit is {top}"
            raise LimitExceeded(msg, limit=name, value=value, maximum=top, field="circuit")


def nested_count(circuit: QuantumCircuit, limits: Limits) -> int:
    """Instructions as run (definitions expanded, loops unrolled); LimitExceeded when any
    nested circuit has too many qubits or clbits, or the count passes max_instructions."""
    total = _count(circuit, limits, {}, [])
    if total > limits.max_instructions:
        msg = f"circuit has {total} instructions; the limit is {limits.max_instructions}"
        top = limits.max_instructions
        raise LimitExceeded(msg, limit="instructions", value=total, maximum=top, field="circuit")
    return total


def _count(circuit: QuantumCircuit, limits: Limits, memo: dict[int, int], keep: list[Any]) -> int:
    total = 0
    for inst in circuit.data:
        if inst.is_standard_gate():
            # Rust-side fact: no Python gate object is built (a standard gate is never a
            # block nor a definition to expand).
            total += 1
            continue
        op = inst.operation
        blocks = getattr(op, "blocks", None)
        if blocks:
            for block in blocks:
                _check(block, f"the body of a {op.name}", limits)
            times = len(op.params[0]) if isinstance(op, ForLoopOp) else 1
            total += times * sum(_count(b, limits, memo, keep) for b in blocks)
        elif type(op) in (Gate, Instruction) and op.definition is not None:
            # User-defined (QPY custom / to_gate()); memoized so shared definitions count once.
            d = op.definition
            if id(d) not in memo:
                _check(d, f"the definition of {op.name[:40]!r}", limits)
                keep.append(d)
                memo[id(d)] = _count(d, limits, memo, keep)
            total += memo[id(d)]
        else:
            total += 1
        if total > limits.max_instructions:  # stop early: a huge loop is refused at once
            return total
    return total
