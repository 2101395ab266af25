"""A simulate task's memory, estimated before it runs: the budget per task.

Pure functions, used by the API at submit (a 422 before any row exists) and by the job
process before it calls Aer (the worker's limits may be below the server's). The
estimate is the simulator's state, which is what grows with the qubits:

=========================  ==================================================================
method                     estimate
=========================  ==================================================================
``statevector``            16 B × 2^n (complex128 amplitudes)
``density_matrix``         16 B × 4^n
``stabilizer``             16 B × n² (a tableau of 2n × 2n bits, rounded up generously)
``matrix_product_state``   16 B × χ² × (2n + 16): n site tensors of 2 × χ × χ amplitudes
                           and the two-qubit gates' SVD work, with χ the bond dimension
                           Aer may reach: ``QTASKDIST_MPS_MAX_BOND_DIMENSION`` (512; Aer's
                           ``matrix_product_state_max_bond_dimension``, past which it
                           truncates), or 2^⌊n/2⌋ when smaller (an exact state needs no
                           more)
``automatic``              what Aer's automatic choice picks (qiskit-aer 0.17-0.18, checked
                           by tests/integration/test_simulate_budget.py): ``density_matrix``
                           for a noisy circuit with more shots than 2^n (Clifford or not,
                           fitting or not), else ``stabilizer`` for a Clifford circuit
                           (every operation in :data:`CLIFFORD_OPS`, no saved
                           statevector), else ``statevector``
=========================  ==================================================================

The result arrays (statevector, probabilities, memory, counts) are counted apart, against
``QTASKDIST_MAX_RESULT_BYTES`` (:mod:`qtaskdist_jupyter.core.arrays`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from qtaskdist_jupyter.core.arrays import check_result_size
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import LimitExceeded
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.core.kinds import kind_of
from qtaskdist_jupyter.core.observables import check_observables


class CircuitShape(Protocol):
    """What the budget reads of a checked circuit (circuits.codec.CircuitInfo has it):
    the budget is domain logic and imports no codec."""

    @property
    def num_qubits(self) -> int: ...

    @property
    def num_clbits(self) -> int: ...

    @property
    def operations(self) -> Collection[str]: ...


AMPLITUDE_BYTES = 16
# Gates Aer's stabilizer method runs (qiskit_aer's BASIS_GATES["stabilizer"] less ``rz``,
# which it takes only at multiples of pi/2) and the operations every method runs.
CLIFFORD_OPS = frozenset(
    "cx cy cz ecr h id pauli s sdg swap sx sxdg x y z measure reset barrier delay store".split()
)
MIB = 1024 * 1024
MPS_MAX_BOND = Limits().mps_max_bond_dimension
# backend_run's offline device: Aer in the worker's own process (qtaskdist_worker.local_device).
LOCAL_DEVICE_ID = "local"


def mps_bond(num_qubits: int, max_bond_dimension: int) -> int:
    """The largest bond dimension an MPS of ``num_qubits`` reaches under the cap."""
    return min(max_bond_dimension, 1 << min(num_qubits // 2, 62))


def state_bytes(method: str, num_qubits: int, mps_max_bond: int = MPS_MAX_BOND) -> int:
    """Bytes of the simulator's state for ``num_qubits`` under a concrete ``method``."""
    n = num_qubits
    if method == "density_matrix":
        return AMPLITUDE_BYTES << (2 * n)
    if method == "stabilizer":
        return AMPLITUDE_BYTES * n * n
    if method == "matrix_product_state":
        return AMPLITUDE_BYTES * mps_bond(n, mps_max_bond) ** 2 * (2 * n + 16)
    return AMPLITUDE_BYTES << n  # statevector, and anything unknown: the dense state


def resolve_method(
    payload: JsonMap, num_qubits: int, operations: Collection[str], budget_bytes: int
) -> str:
    """The method a simulate payload runs with (Aer's choice for ``automatic``)."""
    method = str(payload.get("method") or "automatic")
    if method != "automatic":
        return method
    # Aer (0.17) picks the density matrix first for a noisy run with more shots than 2^n,
    # Clifford or not, and whether or not it fits max_memory_mb (it then fails the run):
    # checked against qiskit-aer by tests/integration/test_simulate_budget.py.
    noise = payload.get("noise")
    noisy = isinstance(noise, dict) and bool(
        noise.get("depolarizing_1q") or noise.get("depolarizing_2q")
    )
    given = payload.get("shots", 1024)
    shots = int(given) if isinstance(given, int | float | str) else 1024
    if noisy and num_qubits < 64 and shots > (1 << num_qubits):
        return "density_matrix"
    if operations and set(operations) <= CLIFFORD_OPS and not payload.get("statevector"):
        return "stabilizer"
    return "statevector"


def task_memory(
    payload: JsonMap,
    num_qubits: int,
    operations: Collection[str],
    budget_bytes: int,
    mps_max_bond: int = MPS_MAX_BOND,
) -> tuple[str, int]:
    """(method, estimated bytes) of one simulate task."""
    method = resolve_method(payload, num_qubits, operations, budget_bytes)
    return method, state_bytes(method, num_qubits, mps_max_bond)


def check_submit(task_type: str, payload: JsonObject, info: CircuitShape, limits: Limits) -> None:
    """The resource checks of a submit, as the type's :class:`~.kinds.ResultRules` say
    (core/kinds.py): a simulate task's observables, memory and result size; a backend
    run's counts, and its memory on the local device (where Aer runs too)."""
    n, ops, budget = info.num_qubits, info.operations, limits.max_task_memory_bytes
    bond = limits.mps_max_bond_dimension
    rules = kind_of(task_type).rules
    if rules.observables:
        observables = payload.get("observables")
        check_observables(observables if isinstance(observables, list) else None, n)
    if rules.memory_check == "payload":
        check_task_memory(payload, n, ops, budget, mps_max_bond=bond)
    elif rules.memory_check == "local_device" and payload.get("device_id") == LOCAL_DEVICE_ID:
        options = payload.get("provider_options")
        method = (options.get("method") if isinstance(options, dict) else None) or "automatic"
        local: JsonObject = {"method": method, "shots": payload.get("shots", 1024)}
        field = "payload.provider_options.method"
        check_task_memory(local, n, ops, budget, field=field, mps_max_bond=bond)
    if rules.size_checked:
        check_result_size(payload, n, info.num_clbits, limits.max_result_bytes)


def check_task_memory(
    payload: JsonMap,
    num_qubits: int,
    operations: Collection[str],
    budget_bytes: int,
    *,
    field: str = "payload.method",
    mps_max_bond: int = MPS_MAX_BOND,
) -> int:
    """The estimate, or LimitExceeded (422 ``limit_exceeded``) naming the field and limit."""
    method, need = task_memory(payload, num_qubits, operations, budget_bytes, mps_max_bond)
    if need <= budget_bytes:
        return need
    hint = "; method 'matrix_product_state' may fit"
    if method == "matrix_product_state":
        bond = mps_bond(num_qubits, mps_max_bond)
        hint = f" (bond dimension {bond}: QTASKDIST_MPS_MAX_BOND_DIMENSION)"
    raise LimitExceeded(
        f"{field}: a {num_qubits}-qubit {method} simulation needs "
        f"{_human(need)}; QTASKDIST_MAX_TASK_MEMORY_BYTES is {_human(budget_bytes)}{hint}",
        limit="max_task_memory_bytes",
        value=need,
        maximum=budget_bytes,
        field=field,
    )


def aer_max_memory_mb(budget_bytes: int) -> int:
    """Aer's ``max_memory_mb`` for a task of this budget (at least 1)."""
    return max(1, budget_bytes // MIB)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
