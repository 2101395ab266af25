"""The QIR conversion corpus, in-process (the job code a worker runs, without the queue).

Each circuit is converted under both profiles where legal and refused where not; every
module is executed in qir-runner by the converter and, here, once more against the
expected distribution written down from the physics (not from our own output).
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pyqir
import pytest
from qbraid_qir.qasm3 import qasm3_to_qir
from qiskit import QuantumCircuit, qasm2, qasm3, qpy
from qiskit.circuit import Parameter
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.circuit.random import random_circuit
from qiskit.quantum_info import Statevector
from qtaskdist_worker.jobs import qir_verify
from qtaskdist_worker.jobs.convert import convert
from qtaskdist_worker.jobs.qir_profile import check_module

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import PermanentJobError, ProfileViolation, QirModuleInvalid

H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
LIMITS = Limits()
SIN2_06 = math.sin(0.6) ** 2  # teleported ry(1.2): P(1) = sin^2(theta / 2)


def _qpy(circuit: QuantumCircuit) -> str:
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return base64.b64encode(buf.getvalue()).decode()


def _measure_all_ghz() -> str:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure_all()  # adds a barrier over all qubits
    return _qpy(qc)


def _qpy_if_else() -> str:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)) as else_:
        qc.x(1)
    with else_:
        qc.h(1)
    qc.measure(1, 1)
    return _qpy(qc)


TELEPORT = (
    H3
    + """qubit[3] q;
bit[3] c;
ry(1.2) q[0];
h q[1];
cx q[1], q[2];
cx q[0], q[1];
h q[0];
c[0] = measure q[0];
c[1] = measure q[1];
if (c[1]) { x q[2]; }
if (c[0]) { z q[2]; }
c[2] = measure q[2];
"""
)

# name: (source, base expectation, adaptive expectation, distribution c[n-1]..c[0])
# an expectation is "ok", BUG (a converter bug the execution check must catch) or a
# fragment the profile refusal must contain.
BUG = "does not compute what the circuit does"
CORPUS: dict[str, tuple[str, str, str, dict[str, float]]] = {
    "bell-qasm2": (
        H2 + "qreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n",
        "ok", "ok", {"00": 0.5, "11": 0.5},
    ),
    "bell-qasm3": (
        H3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n",
        "ok", "ok", {"00": 0.5, "11": 0.5},
    ),
    "ghz-measure-all-qpy": (_measure_all_ghz(), "ok", "ok", {"000": 0.5, "111": 0.5}),
    "barrier-subset-then-reset": (
        H3 + "qubit[3] q;\nbit[3] c;\nx q[2];\nh q[0];\ncx q[0], q[1];\n"
        "barrier q[0], q[1];\nreset q[2];\nc = measure q;\n",
        "ok", "ok", {"000": 0.5, "011": 0.5},
    ),
    "reset-after-entangling": (
        H3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nreset q[0];\nc = measure q;\n",
        "ok", "ok", {"00": 0.5, "10": 0.5},
    ),
    "if-else-qasm3": (
        H3 + "qubit[2] q;\nbit[2] c;\nh q[0];\nc[0] = measure q[0];\n"
        "if (c[0]) {\n  x q[1];\n} else {\n  h q[1];\n}\nc[1] = measure q[1];\n",
        "if/else on a measurement result at line 7", "ok",
        {"00": 0.25, "10": 0.25, "11": 0.5},
    ),
    "if-qasm2": (
        H2 + "qreg q[1];\ncreg c[2];\nh q[0];\nmeasure q[0] -> c[0];\nif (c==1) x q[0];\n"
        "measure q[0] -> c[1];\n",
        # qbraid-qir 0.6.1 compares the register with its bits reversed (c == 1 acts on
        # c = 0b10): the execution check catches it, so the module is refused, not returned.
        "at line 7", BUG, {"00": 0.5, "01": 0.5},
    ),
    "measure-then-reuse": (
        H3 + "qubit[1] q;\nbit[2] c;\nh q[0];\nc[0] = measure q[0];\nx q[0];\n"
        "c[1] = measure q[0];\n",
        "qubit q[0], measured at line 6, used again at line 7", "ok", {"01": 0.5, "10": 0.5},
    ),
    "teleport": (
        TELEPORT, "if/else on a measurement result at line 12", "ok",
        {f"{c2}{c1}{c0}": 0.25 * (SIN2_06 if c2 else 1 - SIN2_06)
         for c0 in (0, 1) for c1 in (0, 1) for c2 in (0, 1)},
    ),
    "if-else-qpy": (
        _qpy_if_else(), "of the circuit's OpenQASM 3 export", "ok",
        {"00": 0.25, "10": 0.25, "11": 0.5},
    ),
    "while-loop": (
        H3 + "qubit[1] q;\nbit c;\nh q[0];\nc = measure q[0];\nwhile (c) {\n  x q[0];\n"
        "  c = measure q[0];\n}\n",
        "a loop at line 7", "a loop at line 7", {},
    ),
    "custom-gates-qasm3": (
        H3 + "gate bellprep a, b { h a; cx a, b; }\ngate rot(t) a { ry(t) a; }\n"
        "qubit[3] q;\nbit[3] c;\nbellprep q[0], q[1];\nrot(pi) q[2];\nc = measure q;\n",
        "ok", "ok", {"100": 0.5, "111": 0.5},
    ),
    "qelib1-gates-qasm2": (
        # u3(pi,0,pi) = X; H cu1(pi) H on the target = CNOT; u2(0,pi) = H.
        H2 + "qreg q[3];\ncreg c[3];\nu3(pi,0,pi) q[0];\nh q[1];\ncu1(pi) q[0],q[1];\n"
        "h q[1];\nu2(0,pi) q[2];\nmeasure q -> c;\n",
        "ok", "ok", {"011": 0.5, "111": 0.5},
    ),
    "two-registers": (
        H3 + "qubit[3] q;\nbit[1] a;\nbit[2] b;\nx q[1];\nb[0] = measure q[1];\n"
        "b[1] = measure q[0];\na[0] = measure q[2];\n",
        "ok", "ok", {"010": 1.0},  # clbits in declaration order: a[0], b[0], b[1]
    ),
    "controlled-phase-interference": (
        # H (controlled-Z with the control in |1>) H on q[1] flips it: q = |11>.
        H3 + "qubit[2] q;\nbit[2] c;\nx q[0];\nh q[1];\ncp(pi) q[0], q[1];\nh q[1];\n"
        "c = measure q;\n",
        "ok", "ok", {"11": 1.0},
    ),
}  # fmt: skip


def _dist(result: dict, width: int) -> dict[str, float]:
    """Run the returned module again in qir-runner (independently of the converter's own
    check) and give the outcome frequencies c[n-1]..c[0]."""
    bitcode = base64.b64decode(result["bitcode_base64"])
    module = pyqir.Module.from_bitcode(pyqir.Context(), bitcode)
    (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
    counts = qir_verify.run_shots(bitcode, entry.name, 2000, 11, qir_verify.record_order(entry))
    return {format(k, f"0{width}b"): v / 2000 for k, v in counts.items()}


def _close(observed: dict[str, float], expected: dict[str, float]) -> None:
    assert set(observed) <= {k for k, p in expected.items() if p > 0}, observed
    tvd = 0.5 * sum(abs(observed.get(k, 0) - expected.get(k, 0)) for k in expected)
    assert tvd < qir_verify.tvd_bound(2000, len(expected)), (observed, expected)


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("profile", ["base", "adaptive"])
def test_corpus(name: str, profile: str) -> None:
    source, base, adaptive, expected = CORPUS[name]
    assert math.isclose(sum(expected.values()), 1.0) or not expected
    expect = base if profile == "base" else adaptive
    payload = {"circuit": source, "profile": profile}
    if expect == BUG:
        with pytest.raises(QirModuleInvalid, match=BUG) as info:
            convert(payload, LIMITS)
        assert info.value.meta["qir_verification"]["status"] == "mismatch"
        return
    if expect != "ok":
        with pytest.raises(ProfileViolation) as info:
            convert(payload, LIMITS)
        msg = str(info.value)
        assert expect in msg and "\n" not in msg, msg
        if profile == "base" and "loop" not in msg:
            assert 'profile: "adaptive"' in msg
        return
    result, meta = convert(payload, LIMITS)
    check = result["verification"]
    assert check["status"] == "matched" and check["shots"] == 1000, check
    assert check["tvd"] <= check["tvd_bound"] and meta["qir_verification"] == check
    assert result["profile"] == profile and f'"qir_profiles"="{profile}"' in result["llvm_ir"]
    if profile == "base":
        assert " br " not in result["llvm_ir"] and "read_result" not in result["llvm_ir"]
    _close(_dist(result, len(next(iter(expected)))), expected)


def test_qpy_parameter_sweep_gives_one_module_per_binding() -> None:
    theta = Parameter("theta")
    qc = QuantumCircuit(1, 1)
    qc.rx(theta, 0)
    qc.measure(0, 0)
    angles = [0.0, math.pi / 2, math.pi]
    payload = {"circuit": _qpy(qc), "parameter_bindings": [{"theta": a} for a in angles]}
    for profile in ("base", "adaptive"):
        result, meta = convert({**payload, "profile": profile}, LIMITS)
        assert [m["parameters"] for m in result["modules"]] == payload["parameter_bindings"]
        assert meta["qir_verification"]["modules"] == 3
        assert meta["qir_verification"]["matched"] == 3
        for module, angle in zip(result["modules"], angles, strict=True):
            p1 = math.sin(angle / 2) ** 2
            _close(_dist(module, 1), {k: v for k, v in {"0": 1 - p1, "1": p1}.items() if v > 1e-12})


def test_qasm3_input_with_one_binding_gives_one_module() -> None:
    source = H3 + "input angle theta;\nqubit[1] q;\nbit[1] c;\nry(theta) q[0];\nc = measure q;\n"
    result, _ = convert(
        {"circuit": source, "parameter_bindings": {"theta": 2 * math.pi / 3}}, LIMITS
    )
    assert "modules" not in result and result["parameters"] == {"theta": 2 * math.pi / 3}
    _close(_dist(result, 1), {"0": 0.25, "1": 0.75})  # sin^2(pi/3)
    with pytest.raises(PermanentJobError, match="unbound parameters \\(theta\\)"):
        convert({"circuit": source}, LIMITS)
    with pytest.raises(PermanentJobError, match="missing \\['theta'\\]"):
        convert({"circuit": source, "parameter_bindings": {"phi": 1.0}}, LIMITS)


def _standard_gate_circuits() -> list[tuple[str, QuantumCircuit]]:
    out = []
    for name, gate in sorted(get_standard_gate_name_mapping().items()):
        if name in ("measure", "reset", "delay", "barrier", "global_phase"):
            continue
        g = type(gate)(*[0.3 + 0.2 * i for i in range(len(gate.params))]) if gate.params else gate
        qc = QuantumCircuit(g.num_qubits, g.num_qubits)
        for i in range(g.num_qubits):
            qc.ry(0.4 + 0.3 * i, i)  # a generic input state, so no gate acts trivially
        qc.append(g, range(g.num_qubits))
        qc.measure(range(g.num_qubits), range(g.num_qubits))
        out.append((name, qc))
    return out


@pytest.mark.parametrize("dump", [qasm2.dumps, qasm3.dumps], ids=["qasm2", "qasm3"])
def test_every_standard_gate_that_qiskit_dumps_converts_and_matches(dump) -> None:
    converted = 0
    for name, qc in _standard_gate_circuits():
        source = dump(qc)
        result, _ = convert({"circuit": source, "verify_seed": 5}, LIMITS)
        assert result["verification"]["status"] == "matched", name
        # Expected: the gate's own matrix applied to the input state (qiskit's physics).
        expected = Statevector(qc.remove_final_measurements(inplace=False)).probabilities_dict()
        _close(_dist(result, qc.num_clbits), {k: v for k, v in expected.items() if v > 1e-12})
        converted += 1
    assert converted >= 40


def test_random_12_qubit_circuit_matches_and_a_wrong_reference_is_caught() -> None:
    qc = random_circuit(12, 4, max_operands=2, measure=True, seed=1234)
    source = qasm3.dumps(qc)
    result, _ = convert({"circuit": source, "verify_shots": 200, "verify_seed": 3}, LIMITS)
    check = result["verification"]
    assert check["status"] == "matched" and check["shots"] == 200, check
    assert result["required_num_qubits"] == 12
    # The same module against another random circuit's distribution must fail a check:
    # the likelihood test has the power the TVD bound lacks at 200 shots over 4096 outcomes.
    bitcode = base64.b64decode(result["bitcode_base64"])
    module = pyqir.Module.from_bitcode(pyqir.Context(), bitcode)
    (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
    counts = qir_verify.run_shots(bitcode, entry.name, 200, 9, qir_verify.record_order(entry))
    other = random_circuit(12, 4, max_operands=2, measure=True, seed=4321)
    own = qir_verify.compare(qir_verify.exact_distribution(qasm3.loads(source)), counts, 200)
    wrong = qir_verify.compare(qir_verify.exact_distribution(other), counts, 200)
    assert own["problem"] is None, own
    assert wrong["problem"] is not None, wrong


def test_a_wrong_module_fails_the_comparison() -> None:
    """|01>+|10> sampled against the Bell reference: a converter bug of that kind is caught."""
    wrong = qasm3_to_qir(
        H3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nx q[0];\nc = measure q;\n",
        name="main",
        profile="base",
    )
    module = pyqir.Module.from_bitcode(pyqir.Context(), wrong.bitcode)
    (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
    counts = qir_verify.run_shots(wrong.bitcode, "main", 1000, 1, qir_verify.record_order(entry))
    bell = qasm3.loads(CORPUS["bell-qasm3"][0])
    figures = qir_verify.compare(qir_verify.exact_distribution(bell), counts, 1000)
    assert "cannot produce it" in figures["problem"]
    # Same support, wrong weights: caught by the TVD bound.
    skew = np.array([0.5, 0.0, 0.0, 0.5])
    figures = qir_verify.compare(skew, {0: 900, 3: 100}, 1000)
    assert figures["problem"].startswith("TVD 0.4000 over 1000 shots exceeds the bound")


def test_a_base_labelled_module_with_a_branch_is_refused() -> None:
    """qbraid-qir's profile="base" accepts if/else and labels the module base anyway; the
    module walk refuses it even when the source check is bypassed."""
    source = CORPUS["if-else-qasm3"][0]
    module = qasm3_to_qir(source, name="main", profile="base")
    parsed = pyqir.Module.from_bitcode(pyqir.Context(), module.bitcode)
    (entry,) = [f for f in parsed.functions if pyqir.is_entry_point(f)]
    with pytest.raises(QirModuleInvalid, match="breaks the base profile .*basic blocks"):
        check_module(parsed, entry, "base")
    adaptive = qasm3_to_qir(source, name="main", profile="adaptive")
    parsed = pyqir.Module.from_bitcode(pyqir.Context(), adaptive.bitcode)
    (entry,) = [f for f in parsed.functions if pyqir.is_entry_point(f)]
    check_module(parsed, entry, "adaptive")
    with pytest.raises(QirModuleInvalid, match="labelled qir_profiles='adaptive'"):
        check_module(parsed, entry, "base")


def test_verification_skips_say_why() -> None:
    bell = CORPUS["bell-qasm3"][0]
    result, meta = convert({"circuit": bell, "verify": "static"}, LIMITS)
    assert result["verification"] == {
        "status": "skipped",
        "reason": 'verify: "static" was asked (pyqir and profile checks only)',
    }
    small = Limits(qir_verify_max_qubits=1)
    result, _ = convert({"circuit": bell}, small)
    assert result["verification"]["status"] == "skipped"
    assert "2 qubits is over the execution check's limit of 1" in result["verification"]["reason"]
    result, _ = convert({"circuit": bell, "verify": "execute"}, small)
    assert result["verification"]["status"] == "matched"
