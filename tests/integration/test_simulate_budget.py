"""The memory estimate against qiskit-aer itself: what ``automatic`` picks for every kind
of circuit the estimate tells apart, and the bond-dimension cap that bounds
``matrix_product_state`` reaching Aer from a real worker (core/budget.py)."""

from __future__ import annotations

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qtaskdist_worker.jobs.simulate import noise_model

from qtaskdist_jupyter.core import budget
from qtaskdist_jupyter.core.circuits.codec import operation_names
from tests.fixtures.hostile_inputs import rotations_qasm
from tests.fixtures.workers import rows, start_worker, stop, submit, wait_until

BUDGET_MB = 64


def _circuit(n: int, clifford: bool, save_statevector: bool) -> QuantumCircuit:
    qc = QuantumCircuit(n, n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    if not clifford:
        qc.rx(0.3, 0)
        qc.t(1)
    if save_statevector:
        qc.save_statevector()
    qc.measure(range(n), range(n))
    return qc


CASES = [
    (n, clifford, noise, shots, False)
    for n in (3, 10)
    for clifford in (True, False)
    for noise in ("none", "depolarizing", "readout")
    for shots in (4, 5000)
] + [
    (3, True, "none", 100, True),
    (3, False, "none", 100, True),
    (13, True, "depolarizing", 10**4, False),
]


@pytest.mark.parametrize(("n", "clifford", "noise", "shots", "save_sv"), CASES)
def test_automatic_is_what_aer_picks(
    n: int, clifford: bool, noise: str, shots: int, save_sv: bool
) -> None:
    """Every kind: Clifford or not, noiseless / depolarizing / readout only, fewer or more
    shots than 2^n, a saved statevector, and a density matrix over the budget."""
    qc = _circuit(n, clifford, save_sv)
    spec = {
        "none": None,
        "depolarizing": {"depolarizing_1q": 0.01, "depolarizing_2q": 0.02},
        "readout": {"readout": 0.05},
    }[noise]
    opts = {"shots": shots, "max_memory_mb": BUDGET_MB, "seed_simulator": 1}
    if spec:
        opts["noise_model"] = noise_model(
            spec.get("depolarizing_1q", 0.0),
            spec.get("depolarizing_2q", 0.0),
            spec.get("readout", 0.0),
        )
    result = AerSimulator(method="automatic").run(qc, **opts).result()
    picked = result.results[0].metadata.get("method")
    payload = {"method": "automatic", "shots": shots, "statevector": save_sv, "noise": spec}
    ops = operation_names(qc)
    assert budget.resolve_method(payload, n, ops, BUDGET_MB * 2**20) == picked


async def test_matrix_product_state_runs_under_the_bond_cap(service, settings, tmp_path) -> None:
    env = {"QTASKDIST_MPS_MAX_BOND_DIMENSION": "4"}
    proc = start_worker(settings, env=env, log=tmp_path / "w.log")
    try:
        (tid,) = await submit(
            service,
            "simulate",
            [{"circuit": rotations_qasm(12), "shots": 100, "method": "matrix_product_state"}],
        )

        async def done() -> bool:
            return (await rows(service, [tid]))[0]["status"] in ("completed", "failed")

        await wait_until(done, timeout=120)
        (row,) = await rows(service, [tid])
        assert row["status"] == "completed", row["error"]
        assert row["meta_data"]["method"] == "matrix_product_state"
        assert row["meta_data"]["mps_max_bond_dimension"] == 4, row["meta_data"]
    finally:
        stop(proc)
