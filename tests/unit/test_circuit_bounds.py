"""The pure parts of the circuit checks: loop and physical-qubit counting, bounded number
conversion, the QPY header walk over every format version, error text, binding names."""

from __future__ import annotations

import io
import math
import random
import struct

import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import ClassicalRegister, Parameter, ParameterVector, QuantumRegister
from qiskit.circuit.classical import expr, types
from qiskit.circuit.library import PauliEvolutionGate, QFTGate, XGate
from qiskit.quantum_info import SparsePauliOp

from qtaskdist_jupyter.core.circuits import qasm_scan
from qtaskdist_jupyter.core.circuits.bindings import check_bindings
from qtaskdist_jupyter.core.circuits.errtext import one_line
from qtaskdist_jupyter.core.circuits.qpy_walk import check_headers
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import CircuitError, InvalidInput, LimitExceeded

H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
LIMITS = Limits()


# ---------------------------------------------------------------- the token scan
@pytest.mark.parametrize(
    ("body", "instructions"),
    [
        ("qubit[2] q;\nfor uint i in [0:3] { h q; }\n", 8),  # inclusive range, broadcast
        ("qubit q;\nfor int i in {1, 2, 5} h q;\n", 3),  # a set; one-statement body
        ("qubit q;\nfor int i in [0:2:10] { h q; }\n", 6),
        ("qubit q;\nfor int i in [10:-3:0] { h q; }\n", 4),
        ("qubit q;\nfor int i in [5:0] { h q; }\n", 0),
        ("qubit q;\nfor int i in [-3:3] { for int j in [0:9] { h q; x q; } }\n", 140),
        ("qubit q;\nbit c;\nc = measure q;\nwhile (c) { x q; c = measure q; }\n", 3),
        ("qubit q;\ngate g a { for int i in [0:9] { x a; } }\nfor int i in [1:3] g q;\n", 30),
    ],
)
def test_loops_count_their_iterations(body: str, instructions: int) -> None:
    assert qasm_scan.scan(H3 + body, "qasm3").instructions == instructions


@pytest.mark.parametrize(
    "body",
    [
        "input int n;\nqubit q;\nfor int i in [0:n] { x q; }\n",
        "qubit q;\narray[int[8], 3] a = {1, 2, 3};\nfor int i in a { x q; }\n",
        "qubit q;\nfor int i in [0:0:5] { x q; }\n",
        "qubit q;\nfor int i in [:5] { x q; }\n",
    ],
)
def test_loops_the_scan_cannot_bound_are_refused(body: str) -> None:
    with pytest.raises(CircuitError, match="loop"):
        qasm_scan.scan(H3 + body, "qasm3")


def test_physical_qubits_count_up_to_the_highest_index() -> None:
    assert qasm_scan.scan(H3 + "h $4;\ncx $0, $1;\n", "qasm3").qubits == 5
    assert qasm_scan.scan(H3 + "qubit[2] q;\nh $100000000;\n", "qasm3").qubits == 100_000_003
    with pytest.raises(LimitExceeded, match="13 digits"):
        qasm_scan.scan(H3 + "h $1000000000000;\n", "qasm3")


@pytest.mark.parametrize("text", ["qreg q[1²];", "qreg q[٣];", "h $٣;", "qreg q[1];\nU(1²,0,0) q;"])
def test_numbers_must_be_ascii(text: str) -> None:
    with pytest.raises(CircuitError, match="ASCII"):
        qasm_scan.scan('OPENQASM 2.0;\ninclude "qelib1.inc";\n' + text, "qasm2")


def test_long_integers_are_refused_before_conversion() -> None:
    src = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[' + "9" * 5000 + "];\n"
    with pytest.raises(LimitExceeded) as got:
        qasm_scan.scan(src, "qasm2")
    assert got.value.detail["limit"] == "integer_digits" and got.value.detail["value"] == 5000
    consts = H3 + "const uint n = 1_000;\nqubit[n] q;\n"
    assert qasm_scan.scan(consts, "qasm3").qubits == 1000


# ---------------------------------------------------------------- the QPY header walk
def _corpus() -> list[tuple[str, QuantumCircuit]]:
    theta, v = Parameter("theta"), ParameterVector("v", 3)
    params = QuantumCircuit(3, 3)
    params.rx(theta, 0)
    params.ry(v[1] * 2 + theta, 1)
    params.measure(range(3), range(3))
    qr, cr = QuantumRegister(2, "q"), ClassicalRegister(2, "c")
    flow = QuantumCircuit(qr, cr)
    flow.h(0)
    flow.measure(0, 0)
    with flow.if_test((cr, 1)) as else_:
        flow.x(1)
    with else_:
        flow.h(1)
    with flow.if_test(expr.logic_and(expr.equal(cr, 2), expr.lift(flow.clbits[0]))):
        flow.z(0)
    with flow.while_loop(expr.logic_not(cr[1])):
        flow.measure(1, 1)
    with flow.for_loop(range(3)):
        flow.rx(math.pi / 4, 0)
    with flow.switch(cr) as case:
        with case(0):
            flow.x(0)
        with case(case.DEFAULT):
            flow.z(0)
    inner = QuantumCircuit(2, name="mine")
    inner.cx(0, 1)
    outer = QuantumCircuit(3, name="outer")
    outer.append(inner.to_gate(), [0, 1])
    outer.append(inner.to_gate().control(1), [2, 0, 1])
    custom = QuantumCircuit(4)
    custom.append(outer.to_gate(), [0, 1, 2])
    custom.append(outer.to_instruction(), [1, 2, 3])
    custom.append(XGate().control(2, ctrl_state=1), [0, 1, 2])
    custom.append(QFTGate(3), [0, 1, 2])
    custom.append(PauliEvolutionGate(SparsePauliOp(["XX", "ZZ"]), time=0.3), [0, 1])
    variables = QuantumCircuit(2)
    a = variables.add_input("a", types.Bool())
    b = variables.add_var("b", expr.lift(5, types.Uint(8)))
    with variables.if_test(expr.logic_and(a, expr.less(b, 3))):
        variables.x(0)
    return [("params", params), ("flow", flow), ("custom", custom), ("vars", variables)]


def _dump(qc: QuantumCircuit, version: int) -> bytes:
    buf = io.BytesIO()
    qpy.dump(qc, buf, version=version)
    return buf.getvalue()


VERSIONS = range(qpy.QPY_COMPATIBILITY_VERSION, qpy.QPY_VERSION + 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_walk_reads_what_qiskit_writes_in_every_version(version: int) -> None:
    for name, qc in _corpus():
        raw = _dump(qc, version)
        check_headers(raw, version, 28 if version >= 16 else 20, LIMITS)  # no refusal
        with pytest.raises(LimitExceeded):  # and refuses what is over a limit
            check_headers(raw, version, 28 if version >= 16 else 20, Limits(max_qubits=1)), name


def test_mutated_payloads_are_refused_only_with_our_errors() -> None:
    rng = random.Random(7)
    for _, qc in _corpus():
        raw = _dump(qc, qpy.QPY_VERSION)
        for _ in range(200):
            mutated = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(28, len(raw))] = rng.randrange(256)
            try:
                check_headers(bytes(mutated), qpy.QPY_VERSION, 28, LIMITS)
            except (CircuitError, LimitExceeded):
                pass


def test_a_claim_larger_than_the_bytes_left_is_malformed() -> None:
    raw = bytearray(_dump(QuantumCircuit(1), qpy.QPY_VERSION))
    struct.pack_into("!Q", raw, 28 + 25, 10**6)  # num_instructions of the only header
    with pytest.raises(LimitExceeded, match="instructions"):
        check_headers(bytes(raw), qpy.QPY_VERSION, 28, LIMITS)
    struct.pack_into("!Q", raw, 28 + 25, 1000)
    with pytest.raises(CircuitError, match="malformed: 1000 instructions claimed"):
        check_headers(bytes(raw), qpy.QPY_VERSION, 28, LIMITS)


# ---------------------------------------------------------------- error text, bindings
def test_a_rust_backtrace_becomes_its_first_reason() -> None:
    raw = (
        "binary parsing error: ╺━━━━━━┅ Backtrace ┅━━━━━━╸ 0: Error: Insufficient bytes "
        "While parsing field 'global_phase_data' in CircuitHeaderV12Pack at "
        "crates/qpy/src/formats.rs:109 1: While parsing field 'header' in QPYCircuit at "
        "crates/qpy/src/formats.rs:81 ╺━━━━━━"
    )
    assert one_line(raw) == (
        "binary parsing error: Insufficient bytes While parsing field 'global_phase_data' "
        "in CircuitHeaderV12Pack"
    )
    assert one_line("\x1b[31mpanicked at src/lib.rs:12:5:\nboom\x1b[0m") == "panicked: boom"


def test_binding_names_must_match_the_circuit() -> None:
    check_bindings({"parameter_bindings": [{"a": 1, "b": 2}]}, ["a", "b"])
    check_bindings({}, ["a"])
    with pytest.raises(InvalidInput) as got:
        check_bindings({"parameter_bindings": [{"a": 1, "b": 2}, {"a": 1, "c": 3}]}, ["a", "b"])
    assert got.value.field == "payload.parameter_bindings.1"
    assert "unknown ['c'], missing ['b']" in got.value.message
    with pytest.raises(InvalidInput) as got:
        check_bindings({"parameter_bindings": {"x": 1}}, [])
    assert got.value.field == "payload.parameter_bindings" and "unknown ['x']" in got.value.message
