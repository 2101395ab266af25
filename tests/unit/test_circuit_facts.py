"""The circuit facts read from the Rust side (``CircuitInstruction.name`` and
``is_standard_gate``, without building Python gate objects) equal the facts read through
each Python operation, on circuits mixing standard gates, standard instructions, user
gates with definitions (some named like standard gates), and control-flow bodies."""

from __future__ import annotations

import io
import random
from typing import Any

from qiskit import QuantumCircuit, qpy
from qiskit.circuit import ForLoopOp, Gate, Instruction

from qtaskdist_jupyter.core.circuits.bounds import nested_count
from qtaskdist_jupyter.core.circuits.codec import operation_names
from qtaskdist_jupyter.core.config import Limits

LIMITS = Limits()


def reference_names(circuit: QuantumCircuit) -> frozenset[str]:
    names: set[str] = set()
    stack = [circuit]
    while stack:
        for inst in stack.pop().data:
            names.add(inst.operation.name)
            stack.extend(getattr(inst.operation, "blocks", None) or ())
    return frozenset(names)


def reference_count(circuit: QuantumCircuit, memo: dict[int, int], keep: list[Any]) -> int:
    total = 0
    for inst in circuit.data:
        op = inst.operation
        blocks = getattr(op, "blocks", None)
        if blocks:
            times = len(op.params[0]) if isinstance(op, ForLoopOp) else 1
            total += times * sum(reference_count(b, memo, keep) for b in blocks)
        elif type(op) in (Gate, Instruction) and op.definition is not None:
            d = op.definition
            if id(d) not in memo:
                keep.append(d)
                memo[id(d)] = reference_count(d, memo, keep)
            total += memo[id(d)]
        else:
            total += 1
    return total


def user_gate(rng: random.Random, name: str) -> Gate:
    body = QuantumCircuit(2, name=name)
    for _ in range(rng.randint(1, 5)):
        rng.choice([lambda: body.h(0), lambda: body.cx(0, 1), lambda: body.rz(0.3, 1)])()
    return body.to_gate()


def fill(qc: QuantumCircuit, rng: random.Random, depth: int) -> QuantumCircuit:
    for _ in range(rng.randint(1, 12)):
        pick = rng.randrange(9)
        if pick == 0:
            qc.h(rng.randrange(3))
        elif pick == 1:
            qc.cx(0, rng.randrange(1, 3))
        elif pick == 2:
            qc.ry(rng.random(), rng.randrange(3))
        elif pick == 3:
            qc.measure(rng.randrange(3), rng.randrange(3))
        elif pick == 4:
            qc.barrier()
        elif pick == 5:
            qc.reset(rng.randrange(3))
        elif pick == 6:  # a user gate, sometimes named like a standard one
            qc.append(user_gate(rng, rng.choice(["mine", "h", "cx", "ry"])), [0, 1])
        elif pick == 7 and depth < 2:
            with qc.if_test((qc.clbits[0], 1)):
                fill(qc, rng, depth + 1)
        elif pick == 8 and depth < 2:
            body = fill(QuantumCircuit(3, 3), rng, depth + 1)
            qc.append(ForLoopOp(range(rng.randint(1, 3)), None, body), qc.qubits, qc.clbits)
    return qc


def test_rust_side_facts_equal_the_python_walk() -> None:
    rng = random.Random(24)
    seen: set[str] = set()
    for _ in range(60):
        qc = fill(QuantumCircuit(3, 3), rng, 0)
        buf = io.BytesIO()
        qpy.dump(qc, buf)
        for circuit in (qc, qpy.load(io.BytesIO(buf.getvalue()))[0]):
            names = operation_names(circuit)
            assert names == reference_names(circuit)
            assert nested_count(circuit, LIMITS) == reference_count(circuit, {}, [])
            seen |= names
    # The cases that tell the two ways apart were drawn.
    assert {"if_else", "for_loop", "mine", "measure", "reset", "barrier"} <= seen
