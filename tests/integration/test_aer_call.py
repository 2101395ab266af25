"""The job code's Aer calls against ``AerSimulator.run`` in-process, bit for bit.

The job process skips qiskit's per-call Python work (the job thread, compile, assembly,
``Result``) and runs an assembled circuit again for the next seed; seeded tasks of one
unit each get their own call. These tests pin that every answer is still exactly what a
user's own ``AerSimulator(method=...).run(circuit, shots=..., seed_simulator=seed)`` gives.
Pure job code: no services.
"""

from __future__ import annotations

import uuid

import pytest
from qiskit import ClassicalRegister, QuantumCircuit, qasm2, qasm3
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import Counts
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
from qtaskdist_worker.jobs.aer_call import run_raw
from qtaskdist_worker.jobs.simulate import noise_model, run_group

from tests.fixtures.circuits import BELL_QASM2

THETA = Parameter("t")


def _circuits() -> dict[str, QuantumCircuit]:
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    # Idle qubits: Aer truncates them away on the first run of an assembled circuit.
    idle = QuantumCircuit(4, 3)
    idle.h(1)
    idle.cx(1, 3)
    idle.ry(0.3, 3)
    idle.measure([1, 3], [0, 2])
    # Mid-circuit measurement, reset and a condition: no measure sampling, shot by shot.
    mid = QuantumCircuit(3, 3)
    mid.h(0)
    mid.measure(0, 0)
    mid.reset(0)
    mid.h(0)
    mid.cx(0, 2)
    with mid.if_test((mid.clbits[0], 1)):
        mid.x(1)
    mid.measure([0, 1, 2], [0, 1, 2])
    bound = QuantumCircuit(2, 2)
    bound.ry(THETA, 0)
    bound.cx(0, 1)
    bound.rx(THETA, 1)
    bound.save_expectation_value(SparsePauliOp("ZI"), [0, 1], label="exp0")
    bound.save_expectation_value(SparsePauliOp("XX"), [0, 1], label="exp1")
    bound.measure([0, 1], [0, 1])
    two = QuantumCircuit(3)
    a, b = ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
    two.add_register(a)
    two.add_register(b)
    two.h(0)
    two.cx(0, 1)
    two.h(2)
    two.measure(0, a[0])
    two.measure([1, 2], b)
    return {"bell": bell, "idle": idle, "mid": mid, "bound": bound, "two_registers": two}


def _noise() -> NoiseModel:
    model = NoiseModel()
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["h", "ry", "rx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
    model.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]))
    return model


@pytest.mark.parametrize("method", ["automatic", "density_matrix", "matrix_product_state"])
def test_an_assembled_circuit_run_again_gives_what_a_fresh_run_gives(method: str) -> None:
    sim = AerSimulator(method=method)
    seeds = [0, 1, 2, 7, 2113, 99_991, 2**31 + 5]
    for name, circuit in _circuits().items():
        for noise in (None, _noise()):
            for memory in (False, True):
                # The same circuit object every time: the first call assembles it, the
                # later ones (other seeds, other bindings) run the kept assembly.
                for seed in seeds:
                    options = {"shots": 57, "memory": memory, "seed_simulator": seed}
                    if noise is not None:
                        options["noise_model"] = noise
                    binds = [{THETA: [0.37 * (seed % 5)]}] if circuit.parameters else None
                    want = sim.run(circuit, binds, **options).result()
                    got = run_raw(sim, [circuit], options, binds)["results"][0]
                    where = (name, noise is not None, memory, seed)
                    header = got["header"]
                    counts = Counts(
                        got["data"]["counts"],
                        creg_sizes=header["creg_sizes"],
                        memory_slots=header["memory_slots"],
                    )
                    assert dict(counts) == dict(want.get_counts(0)), where
                    assert got["seed_simulator"] == want.results[0].seed_simulator == seed
                    if memory:
                        assert got["data"]["memory"] == want.data(0)["memory"], where
                    for key in ("exp0", "exp1"):
                        if key in want.data(0):
                            assert got["data"][key] == want.data(0)[key], where


def _task(payload: dict) -> dict:
    return {"task_id": str(uuid.uuid4()), "payload": payload}


ANSATZ = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[3] q;
bit[3] c;
x q[0];
ry(theta) q[1];
cx q[1], q[2];
ry(theta) q[2];
c = measure q;
"""


def test_a_unit_of_seeded_unseeded_and_observable_tasks_equals_solo_runs() -> None:
    """One unit as the worker plans it (equal run options): every seeded task gets exactly
    its solo in-process counts, the unseeded ones share a call, observables match too."""
    seeded = [_task({"circuit": BELL_QASM2, "shots": 100, "seed": s}) for s in range(40)]
    unseeded = [_task({"circuit": BELL_QASM2, "shots": 100}) for _ in range(5)]
    points = [(s, -1.0 + 0.25 * s) for s in range(8)]
    observed = [
        _task({"circuit": ANSATZ, "shots": 100, "seed": 500 + s,
               "parameter_bindings": [{"theta": t}], "observables": ["ZZI", "XIX"]})
        for s, t in points
    ]  # fmt: skip
    tasks = [*seeded[:20], *unseeded, *observed, *seeded[20:]]
    replies = run_group({"tasks": tasks, "threads": 1, "limits": None})["replies"]
    assert all(replies[t["task_id"]]["ok"] for t in tasks)

    sim = AerSimulator()
    bell = qasm2.loads(BELL_QASM2, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    for s, task in enumerate(seeded):
        got = replies[task["task_id"]]
        want = sim.run(bell, shots=100, seed_simulator=s).result().get_counts()
        assert got["result"]["counts"] == dict(want)
        assert got["meta"]["seed_simulator"] == s
    for task in unseeded:
        assert sum(replies[task["task_id"]]["result"]["counts"].values()) == 100

    ansatz = qasm3.loads(ANSATZ)
    (theta,) = ansatz.parameters
    for (s, t), task in zip(points, observed, strict=True):
        body = ansatz.assign_parameters({theta: t}).remove_final_measurements(inplace=False)
        for k, label in enumerate(["ZZI", "XIX"]):
            body.save_expectation_value(SparsePauliOp(label), range(3), label=f"exp{k}")
        body.add_register(ClassicalRegister(3, "c"))
        body.measure(range(3), range(3))
        want = sim.run(body, shots=100, seed_simulator=500 + s).result()
        (got,) = replies[task["task_id"]]["result"]["results"]
        assert got["parameters"] == {"theta": t}
        assert got["counts"] == dict(want.get_counts(0))
        assert got["expectation_values"] == [float(want.data(0)[f"exp{k}"]) for k in range(2)]


def test_noisy_seeded_tasks_with_memory_equal_solo_runs() -> None:
    two_regs = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg a[1];\ncreg b[2];\n'
        "h q[0];\ncx q[0],q[1];\nh q[2];\nmeasure q[0] -> a[0];\nmeasure q[1] -> b[0];\n"
        "measure q[2] -> b[1];\n"
    )
    noise = {"depolarizing_1q": 0.02, "depolarizing_2q": 0.05, "readout": 0.03}
    tasks = [
        _task({"circuit": two_regs, "shots": 64, "seed": s, "memory": True, "noise": noise})
        for s in range(12)
    ]
    replies = run_group({"tasks": tasks, "threads": 1, "limits": None})["replies"]
    sim = AerSimulator()
    circuit = qasm2.loads(two_regs, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    model = noise_model(0.02, 0.05, 0.03)
    for s, task in enumerate(tasks):
        got = replies[task["task_id"]]
        assert got["ok"], got
        want = sim.run(circuit, shots=64, seed_simulator=s, memory=True, noise_model=model)
        result = want.result()
        assert got["result"]["counts"] == dict(result.get_counts())
        assert got["result"]["memory"] == result.get_memory()


def test_unseeded_runs_of_a_kept_assembly_draw_new_seeds() -> None:
    sim = AerSimulator()
    circuit = _circuits()["bell"]
    seeds = {
        run_raw(sim, [circuit], {"shots": 10})["results"][0]["seed_simulator"] for _ in range(20)
    }
    assert len(seeds) == 20
