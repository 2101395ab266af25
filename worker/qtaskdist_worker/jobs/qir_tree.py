"""A prepared circuit straight to QIR, with no OpenQASM 3 text in between (issue 24).

``qasm3_to_qir(text)`` parses its input with openqasm3's ANTLR parser, which is about half
of a small conversion's time; and given a tree, it prints it and parses the text again.
The conversion job has the circuit already (qiskit's Rust parser read the user's program,
and ``prepare`` left only BASIS gates, measure and reset). :func:`program_tree` builds the
tree that parsing qiskit's own OpenQASM 3 export of that circuit would give, node for
node, and :func:`to_qir` runs qbraid-qir's steps on it (pyqasm's load and unroll, then
its QIR visitor), the same steps ``qasm3_to_qir`` runs after its parse.

The tree is built only for the shape whose export is plain: one quantum register holding
every qubit in order; classical registers that lay out every clbit once, in order; names
that qiskit's exporter keeps as they are; only BASIS gates of stdgates.inc with numeric angles,
measure and reset. Anything else (control flow, other names, unbound parameters) gets ``None``
and goes the text way. ``tests/unit/test_qir_tree.py`` checks that both ways give the
same bitcode over a corpus of circuits.
"""

from __future__ import annotations

import math
import re
from typing import Any

from openqasm3 import ast

# qiskit's exporter keeps these names as they are (none is a keyword, a built-in constant
# or a standard gate's name); any other register name may be escaped or renamed there.
_PLAIN_NAME = re.compile(r"(?:q|qr|c|cr|meas|ro|out|m|res|result|reg)[0-9]*")
# BASIS gates (convert.BASIS) that stdgates.inc defines, by their number of angles. Not
# sxdg: qiskit's export defines it in the program (s; h; s), which pyqasm would take over
# its own sxdg, so a circuit with sxdg goes the text way.
_GATES = {
    **dict.fromkeys("id x y z h s sdg t tdg sx cx cz swap ccx".split(), 0),
    **dict.fromkeys(("rx", "ry", "rz"), 1),
}


def program_tree(circuit: Any) -> ast.Program | None:
    """The OpenQASM 3 tree of ``circuit`` (as qiskit would export it), or None where the
    circuit is not of the plain shape (see the module's docstring)."""
    qregs, cregs = list(circuit.qregs), list(circuit.cregs)
    if len(qregs) != 1 or list(qregs[0]) != list(circuit.qubits):
        return None
    if [bit for reg in cregs for bit in reg] != list(circuit.clbits):
        return None
    names = [r.name for r in qregs + cregs]
    if len(set(names)) != len(names) or not all(_PLAIN_NAME.fullmatch(n) for n in names):
        return None
    qubit = {bit: _indexed(qregs[0].name, i) for i, bit in enumerate(qregs[0])}
    clbit = {bit: _indexed(reg.name, i) for reg in cregs for i, bit in enumerate(reg)}
    statements: list[ast.Statement | ast.Pragma] = [ast.Include("stdgates.inc")]
    statements += [
        ast.ClassicalDeclaration(ast.BitType(ast.IntegerLiteral(len(r))), ast.Identifier(r.name))
        for r in cregs
    ]
    statements.append(
        ast.QubitDeclaration(ast.Identifier(qregs[0].name), ast.IntegerLiteral(len(qregs[0])))
    )
    for inst in circuit.data:
        statement = _statement(inst, qubit, clbit)
        if statement is None:
            return None
        statements.append(statement)
    return ast.Program(statements=statements, version="3.0")


def _statement(inst: Any, qubit: dict[Any, Any], clbit: dict[Any, Any]) -> ast.Statement | None:
    op = inst.operation
    operands = [qubit[q] for q in inst.qubits]
    if op.name == "measure":
        measurement = ast.QuantumMeasurement(operands[0])
        return ast.QuantumMeasurementStatement(measurement, clbit[inst.clbits[0]])
    if op.name == "reset":
        return ast.QuantumReset(operands[0])
    if _GATES.get(op.name) != len(op.params) or inst.clbits:
        return None
    angles: list[ast.Expression] = []
    for param in op.params:
        angle = _angle(param)
        if angle is None:
            return None
        angles.append(angle)
    return ast.QuantumGate([], ast.Identifier(op.name), angles, operands)


def _angle(param: Any) -> ast.Expression | None:
    """A numeric angle as the exporter's text parses: a float literal, negated by a unary
    minus (the exporter writes ``-0.3``). A symbolic or non-finite value: None."""
    try:
        value = float(param)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    literal = ast.FloatLiteral(abs(value))
    if math.copysign(1.0, value) < 0:
        return ast.UnaryExpression(ast.UnaryOperator["-"], literal)
    return literal


def _indexed(name: str, index: int) -> ast.IndexedIdentifier:
    return ast.IndexedIdentifier(ast.Identifier(name), [[ast.IntegerLiteral(index)]])


def to_qir(tree: ast.Program, name: str, profile: str) -> Any:
    """qbraid-qir's ``qasm3_to_qir`` from its load on, given the tree: pyqasm loads and
    unrolls it, the QIR visitor writes the module, and LLVM verifies it."""
    import pyqasm
    from pyqir import Context, qir_module
    from qbraid_qir.qasm3 import QasmQIRModule, QasmQIRVisitor
    from qbraid_qir.qasm3.convert import Profile
    from qbraid_qir.qasm3.exceptions import Qasm3ConversionError

    module = pyqasm.loads(tree)
    module.unroll()
    llvm_module = qir_module(Context(), name)
    visitor = QasmQIRVisitor(profile_name=Profile.from_input(profile).value)
    QasmQIRModule(name, module, llvm_module).accept(visitor)
    err = llvm_module.verify()
    if err is not None:
        raise Qasm3ConversionError(err)
    return llvm_module
