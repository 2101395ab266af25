"""The conversion job's direct tree (worker/qtaskdist_worker/jobs/qir_tree.py) gives the
very bitcode that qbraid-qir gives from qiskit's OpenQASM 3 export of the same circuit,
and the shapes it does not handle go the text way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qbraid_qir.qasm3 import qasm3_to_qir
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qtaskdist_worker.jobs.convert import _to_qasm3, prepare
from qtaskdist_worker.jobs.qir_tree import program_tree, to_qir

ONE_QUBIT = ["id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg"]  # sxdg: text way
ROTATIONS = ["rx", "ry", "rz"]
TWO_QUBITS = ["cx", "cz", "swap"]


def _by_text(circuit: QuantumCircuit, profile: str) -> bytes:
    return qasm3_to_qir(_to_qasm3(circuit), name="main", profile=profile).bitcode


def _by_tree(circuit: QuantumCircuit, profile: str) -> bytes:
    """The tree's way, or the text's where the circuit is not of the tree's shape."""
    tree = program_tree(circuit)
    if tree is None:
        return _by_text(circuit, profile)
    return to_qir(tree, "main", profile).bitcode


@st.composite
def circuits(draw: st.DrawFn) -> QuantumCircuit:
    n = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    names = ["c", "meas"][: len(widths)]
    qc = QuantumCircuit(QuantumRegister(n, draw(st.sampled_from(["q", "qr"]))))
    for name, width in zip(names, widths, strict=True):
        qc.add_register(ClassicalRegister(width, name))
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["one", "rot", "two", "ccx", "reset", "measure"]))
        q = draw(st.integers(0, n - 1))
        other = draw(st.integers(0, n - 1).filter(lambda x, q=q: x != q)) if n > 1 else None
        if kind == "one":
            getattr(qc, draw(st.sampled_from(ONE_QUBIT)))(q)
        elif kind == "rot":
            # Angles off pi's simple fractions: qiskit's export prints those as pi/k.
            angle = draw(st.integers(-5000, 5000)) / 1013
            getattr(qc, draw(st.sampled_from(ROTATIONS)))(angle, q)
        elif kind == "two" and other is not None:
            getattr(qc, draw(st.sampled_from(TWO_QUBITS)))(q, other)
        elif kind == "ccx" and n >= 3:
            qc.ccx(*draw(st.permutations(range(n)))[:3])
        elif kind == "reset":
            qc.reset(q)
        elif kind == "measure" and qc.num_clbits:
            qc.measure(q, draw(st.integers(0, qc.num_clbits - 1)))
    return qc


@settings(max_examples=60, deadline=None)
@given(circuits(), st.sampled_from(["base", "adaptive"]))
def test_the_tree_gives_the_bitcode_of_the_export(circuit: QuantumCircuit, profile: str) -> None:
    try:
        expected = _by_text(circuit, profile)
    except Exception as exc:  # noqa: BLE001 - then the tree's way must refuse it too
        with pytest.raises(type(exc)):
            _by_tree(circuit, profile)
        return
    assert _by_tree(circuit, profile) == expected


def test_a_bell_pair_with_two_registers_out_of_order() -> None:
    qc = QuantumCircuit(
        QuantumRegister(2, "q"), ClassicalRegister(1, "m"), ClassicalRegister(1, "c")
    )
    qc.h(0)
    qc.cx(0, 1)
    qc.rz(-0.25, 1)
    qc.measure(0, 1)
    qc.measure(1, 0)
    assert program_tree(qc) is not None
    assert _by_tree(qc, "base") == _by_text(qc, "base")


def _two_qregs() -> QuantumCircuit:
    qc = QuantumCircuit(QuantumRegister(1, "a"), QuantumRegister(1, "b"))
    qc.cx(0, 1)
    return qc


def _renamed() -> QuantumCircuit:
    qc = QuantumCircuit(QuantumRegister(1, "q"), ClassicalRegister(1, "x"))  # "x" is a gate
    qc.measure(0, 0)
    return qc


def _unbound() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.rx(Parameter("t"), 0)
    return qc


def _control_flow() -> QuantumCircuit:
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)
    return qc


def _other_gate() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.cp(0.5, 0, 1)
    return qc


def _sxdg() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.sxdg(0)  # qiskit's export defines it; pyqasm has its own
    return qc


@pytest.mark.parametrize(
    "make", [_two_qregs, _renamed, _unbound, _control_flow, _other_gate, _sxdg]
)
def test_other_shapes_go_the_text_way(make) -> None:
    assert program_tree(make()) is None


def test_prepared_circuits_of_other_gates_take_the_tree() -> None:
    qc = QuantumCircuit(2, 2)
    qc.cp(0.5, 0, 1)
    qc.u(0.1, 0.2, 0.3, 1)
    qc.measure([0, 1], [0, 1])
    prepared = prepare(qc)
    assert program_tree(prepared) is not None
    assert _by_tree(prepared, "base") == _by_text(prepared, "base")
